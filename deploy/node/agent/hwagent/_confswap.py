"""Configuration files swapped under a node-wide lock, checked before the daemon loads them,
and the process helpers the reloads need (pid files, a master's workers)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from hwagent.errors import AgentError
from hwagent.system import node_lock, output_tail, read_text, remove_file, replace_file, run


def swap_config(
    kind: str,
    path: str,
    content: str | None,
    *,
    check: Sequence[str],
    reload: Callable[[], None],
) -> bool:
    """Put a configuration file in place (or remove it, with ``content=None``), check the
    whole configuration with ``check``, and only then reload. Under the ``kind`` lock.

    When the check fails the previous file is put back, the running server never sees the
    bad configuration, and the error (``invalid``, permanent) carries the checker's output in
    ``detail``. Returns whether anything changed (an unchanged file is not reloaded).
    """
    with node_lock(kind):
        old = read_text(path)
        if old == content:
            return False
        if content is not None:
            replace_file(path, content)
        else:
            remove_file(path)
        proc = run(check, check=False, what=f"checking the {kind} configuration")
        if proc.returncode != 0:
            if old is not None:
                replace_file(path, old)
            else:
                remove_file(path)
            raise AgentError(
                "invalid",
                f"the {kind} configuration check failed; the previous configuration stays live",
                detail=output_tail(proc),
            )
        reload()
    return True


def pid_from(path: str) -> int | None:
    """The pid in a pid file when that process is alive."""
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def children(parent: int, cmdline: bytes) -> list[int]:
    """Processes whose parent is ``parent`` and whose command line is ``cmdline``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().rstrip(b"\0") == cmdline:
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def cmdline_of(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0")
    except OSError:
        return b""
