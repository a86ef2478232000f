"""Changing one nginx configuration file: stage, check the whole configuration, then reload.

Under the node-wide nginx lock the new file replaces the old one; if ``nginx -t`` refuses the
result, the previous file is put back and the running server never sees the bad
configuration. A reload is asynchronous in nginx: the change counts as done once the old
worker processes stopped taking requests.
"""

from __future__ import annotations

import os
import subprocess
import time

from hwagent import system
from hwagent.errors import AgentError

PID_FILE = "/run/nginx.pid"


def _workers(master: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == master and cmdline.startswith(b"nginx: worker process"):
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(b"nginx: worker process")
    except OSError:
        return False


def reload() -> None:
    """Reload nginx (start it when it is not running) and wait for the old workers."""
    master = 0
    text = system.read_text(PID_FILE)
    if text and text.strip().isdigit():
        master = int(text.strip())
    if not master or not os.path.exists(f"/proc/{master}"):
        if system.have_systemd():
            system.run(["systemctl", "restart", "nginx"], what="starting nginx")
        else:
            subprocess.run(
                ["nginx"], stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=60
            )
        return
    old = _workers(master)
    if system.have_systemd():
        system.run(["systemctl", "reload", "nginx"], what="reloading nginx")
    else:
        system.run(["nginx", "-s", "reload"], what="reloading nginx")
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in old):
        if time.monotonic() > deadline:
            raise AgentError("busy", "nginx did not finish reloading", permanent=False)
        time.sleep(0.025)


def swap(path: str, content: str | None) -> bool:
    """Put ``content`` at ``path`` (``None`` removes it), check, reload; whether it changed."""
    with system.node_lock("nginx"):
        previous = system.read_text(path)
        if previous == content:
            return False
        if content is None:
            system.remove_file(path)
        else:
            system.replace_file(path, content, mode=0o644)
        check = system.run(["nginx", "-t", "-q"], check=False, what="checking nginx")
        if check.returncode != 0:
            if previous is None:
                system.remove_file(path)
            else:
                system.replace_file(path, previous, mode=0o644)
            raise AgentError(
                "invalid",
                "the web server refused the new configuration; the previous one stays live",
                detail=system.output_tail(check),
            )
        reload()
    return True
