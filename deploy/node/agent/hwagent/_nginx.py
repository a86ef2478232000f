"""Every change to nginx's configuration: an account's server block, its HTTPS part.

A change (``swap``) runs under the node-wide nginx lock and costs one parse of the whole
configuration, however many sites the node serves:

1. the new file is put in place (the previous content stays in memory);
2. the file is checked on its own: ``nginx -t`` on a small configuration that holds only the
   node's shared http settings (``conf.d/hostwright-http.conf``) and this file, so the check
   costs the same on a node with ten sites as with two thousand. A refused file is taken back
   (``invalid``) before the running server could see it;
3. the running master gets SIGHUP directly: ``nginx -s reload`` and ``systemctl reload``
   (which runs it) parse the whole configuration once more only to learn the master's pid;
4. the change counts as done once the old workers stopped taking requests, so what answers
   afterwards is the new configuration. If the master refuses the whole configuration
   (something a single file cannot show, e.g. two blocks that conflict), it logs an
   ``[emerg]`` line and keeps its old workers: the previous file is put back and the error
   (``invalid``) carries nginx's words. The master never ran the refused configuration, so
   nothing needs reloading.

Before, a change ran ``nginx -t``, ``nginx -s reload`` and the master's reload: three parses of
every server block on the node.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import time

from hwagent import _confswap, system
from hwagent.errors import AgentError

PID_FILE = "/run/nginx.pid"
ERROR_LOG = "/var/log/nginx/error.log"
CONF_DIR = "/etc/nginx"
# The node's http-level settings every server block relies on (30-nginx.sh writes it).
HTTP_SETTINGS = f"{CONF_DIR}/conf.d/hostwright-http.conf"
WORKER = b"nginx: worker process"
# How long a reload may take before the change is reported busy (a transient error): the
# master parses every server block first, which takes seconds on a loaded node with thousands.
RELOAD_WAIT = 60.0


def _is_server_block(content: str) -> bool:
    """Whether the file is whole server blocks (http context) rather than a part of one."""
    lines = [line.strip() for line in content.splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    return bool(code) and re.match(r"server\s*\{", code[0]) is not None


def check_alone(path: str, content: str) -> None:
    """``nginx -t`` on the file by itself, with the node's shared http settings: within
    ``http`` when it holds server blocks, within a ``server`` when it is a part of one (an
    HTTPS part). Raises ``invalid`` when refused."""
    body = f"include {path};" if _is_server_block(content) else f"server {{ include {path}; }}"
    settings = f"include {HTTP_SETTINGS};" if os.path.exists(HTTP_SETTINGS) else ""
    text = (
        "# A check of one file by the node agent (hwagent._nginx); never loaded.\n"
        f"events {{}}\nhttp {{\n{settings}\n{body}\n}}\n"
    )
    # In nginx's own directory: relative includes (fastcgi_params) resolve from the
    # directory of the configuration file given with -c.
    fd, check = tempfile.mkstemp(prefix=".hw-check-", suffix=".conf", dir=CONF_DIR)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        proc = system.run(["nginx", "-t", "-q", "-c", check], check=False, what="checking nginx")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(check)
    if proc.returncode != 0:
        raise AgentError(
            "invalid",
            "the web server refused the new configuration; the previous one stays live",
            detail=system.output_tail(proc).replace(check, "<check>"),
        )


def _master() -> int | None:
    pid = _confswap.pid_from(PID_FILE)
    if pid is not None and _confswap.cmdline_of(pid).startswith(b"nginx: master process"):
        return pid
    return None


def _log_size() -> int:
    try:
        return os.stat(ERROR_LOG).st_size
    except OSError:
        return 0


def _refusal(master: int, offset: int) -> str | None:
    """The master's ``[emerg]`` lines logged since ``offset``: it refused the configuration."""
    try:
        with open(ERROR_LOG, "rb") as f:
            f.seek(offset)
            text = f.read(64 * 1024).decode(errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if f" {master}#" in line and "[emerg]" in line]
    return "\n".join(lines)[-system.TAIL :] or None


def start() -> None:
    """Start nginx when no master runs (the whole configuration is checked by nginx)."""
    if system.have_systemd():
        system.run(["systemctl", "restart", "nginx"], what="starting nginx")
    else:
        system.run(["nginx"], what="starting nginx")


def reload() -> None:
    """Load the configuration now on disk: SIGHUP to the master, then wait until its old
    workers stopped taking requests. ``AgentError('invalid')`` when the master refused it
    (it keeps running the previous one); ``busy`` (transient) when it takes too long."""
    master = _master()
    if master is None:
        start()
        return
    old = _confswap.children(master, WORKER)
    offset = _log_size()
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_WAIT
    while time.monotonic() < deadline:
        # A worker told to stop renames itself "worker process is shutting down".
        if not any(_confswap.cmdline_of(p) == WORKER for p in old):
            return
        refused = _refusal(master, offset)
        if refused:
            raise AgentError(
                "invalid",
                "the web server refused the new configuration; the previous one stays live",
                detail=refused,
            )
        time.sleep(0.02)
    raise AgentError("busy", "nginx did not finish reloading", permanent=False)


def swap(path: str, content: str | None) -> bool:
    """Put ``content`` at ``path`` (``None`` removes it), check it, reload; whether anything
    changed (the same content changes and reloads nothing). A refused file is put back."""
    return change({path: content})


def change(files: dict[str, str | None]) -> bool:
    """Several files changed together (``None`` removes one): each new file checked on its
    own, then one reload; all of them are put back when nginx refuses any."""
    with system.node_lock("nginx"):
        previous = {path: system.read_text(path) for path in files}
        todo = {path: content for path, content in files.items() if previous[path] != content}
        if not todo:
            return False

        def put_back() -> None:
            for path in todo:
                old = previous[path]
                if old is None:
                    system.remove_file(path)
                else:
                    system.replace_file(path, old, mode=0o644)

        try:
            for path, content in todo.items():
                if content is None:
                    system.remove_file(path)
                else:
                    system.replace_file(path, content, mode=0o644)
            for path, content in todo.items():
                if content is not None:
                    check_alone(path, content)
            reload()
        except AgentError as exc:
            if exc.code == "invalid":
                put_back()
            raise
    return True
