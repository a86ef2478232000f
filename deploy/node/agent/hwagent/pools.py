"""An account's PHP-FPM pool, running as the account's user.

``/etc/php/8.2/fpm/pool.d/hw-<user>.conf`` listens on ``/run/php/hw-<user>.sock`` (nginx's
group may connect). The file is built here from typed values, checked with ``php-fpm8.2 -t``,
and loaded with a graceful reload; the action returns once PHP-FPM serves the pool (or has
stopped serving it, for a removal).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from hwagent import _confswap, system, validate
from hwagent.errors import AgentError
from hwagent.registry import action

PHP = "8.2"
POOL_DIR = f"/etc/php/{PHP}/fpm/pool.d"
FPM_PID = f"/run/php/php{PHP}-fpm.pid"
CGROUP_JOIN_DIR = "/usr/local/lib/hostwright"


def pool_path(user: str) -> str:
    return f"{POOL_DIR}/hw-{user}.conf"


def pool_socket(user: str) -> str:
    return f"/run/php/hw-{user}.sock"


def pool_config(*, user: str, workers: int, memory_mb: int) -> str:
    home = f"/home/{user}"
    tmp = f"{home}/tmp"  # noqa: S108  (the account's own, not a shared one)
    memory_limit = max(32, min(memory_mb // max(workers, 1), 1024))
    basedir = ":".join(
        [f"{home}/", f"{CGROUP_JOIN_DIR}/", "/proc/self/cgroup"]
        + [f"/sys/fs/cgroup/{c}/hostwright/{user}/" for c in ("cpu", "cpuacct", "memory", "pids")]
    )
    return f"""; managed by Hostwright: changes are overwritten
[hw-{user}]
user = {user}
group = {user}
listen = {pool_socket(user)}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = ondemand
pm.max_children = {workers}
pm.process_idle_timeout = 30s
pm.max_requests = 500
chdir = /
php_admin_value[memory_limit] = {memory_limit}M
php_admin_value[open_basedir] = {basedir}
; Workers are forked by the shared master; each joins the account's cgroups on its first
; request (the account owns only its cgroup.procs files, see hwagent.limits).
php_admin_value[auto_prepend_file] = {CGROUP_JOIN_DIR}/cgroup-join.php
; Temporary files, uploads and sessions stay in the account's own tmp, not a shared /tmp.
php_admin_value[sys_temp_dir] = {tmp}
php_admin_value[upload_tmp_dir] = {tmp}
php_admin_value[session.save_path] = {tmp}
"""


def _master_from_proc() -> int | None:
    """The running master found by its process title (while its pid file is rewritten): one
    of this system's, not of a container running on the same kernel."""
    try:
        ours = (os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/pid"))
    except OSError:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        if not _confswap.cmdline_of(int(entry)).startswith(b"php-fpm: master process"):
            continue
        try:
            theirs = (os.readlink(f"/proc/{entry}/ns/mnt"), os.readlink(f"/proc/{entry}/ns/pid"))
        except OSError:
            continue
        if theirs == ours:
            return int(entry)
    return None


def _master(wait: float = 3.0) -> int | None:
    """The master's pid. While an earlier reload re-executes the master its pid file is
    missing for a moment: wait for it, then look for the master itself, before concluding
    that PHP-FPM is down."""
    deadline = time.monotonic() + wait
    while True:
        pid = _confswap.pid_from(FPM_PID)
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            return _master_from_proc()
        time.sleep(0.05)


def reload_fpm() -> None:
    if system.have_systemd():
        system.run(["systemctl", "reload-or-restart", f"php{PHP}-fpm"], what="reloading PHP-FPM")
        return
    pid = _master()
    if pid is None:
        os.makedirs("/run/php", exist_ok=True)
        started = system.run([f"php-fpm{PHP}", "-D"], check=False, what="starting PHP-FPM")
        if started.returncode != 0:
            # Most often another master came up meanwhile: worth another attempt.
            raise AgentError(
                "busy",
                "PHP-FPM could not be started or reloaded",
                permanent=False,
                detail=system.output_tail(started),
            )
    else:
        os.kill(pid, signal.SIGUSR2)


def _socket_state(socket: str, want: bool, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if os.path.exists(socket) == want:
            return True
        time.sleep(0.05)
    return os.path.exists(socket) == want


def settle(user: str) -> None:
    """Wait until PHP-FPM serves the pool exactly when its file exists. A reload that raced
    another one can leave the old state: reload once more under the lock, and drop a socket
    file no pool uses any more."""
    want = os.path.exists(pool_path(user))
    socket = pool_socket(user)
    if _socket_state(socket, want, 5):
        return
    with system.node_lock("fpm"):
        reload_fpm()
    if _socket_state(socket, want, 5):
        return
    if not want:
        system.remove_file(socket)
        return
    raise AgentError("busy", f"PHP-FPM did not start the pool of {user}", permanent=False)


def swap_pool(user: str, content: str | None) -> bool:
    changed = _confswap.swap_config(
        "fpm", pool_path(user), content, check=[f"php-fpm{PHP}", "-t"], reload=reload_fpm
    )
    settle(user)
    return changed


@action("pool.ensure")
def ensure(*, user: str, workers: int, memory_mb: int) -> dict[str, Any]:
    """The account's pool with ``workers`` PHP processes at most and a memory limit per
    process from the plan's memory. Checks the user exists first. The same configuration
    changes nothing; a failed check leaves the previous pool live (``invalid``)."""
    user = validate.linux_user(user)
    workers = validate.positive_int(workers, name="PHP workers", maximum=500)
    memory_mb = validate.positive_int(memory_mb, name="memory", maximum=1024 * 1024)
    from hwagent.safefs import account

    account(user)
    content = pool_config(user=user, workers=workers, memory_mb=memory_mb)
    return {"changed": swap_pool(user, content), "socket": pool_socket(user)}


@action("pool.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Stop serving the account's pool and remove its file (nothing to do when gone)."""
    user = validate.linux_user(user)
    return {"changed": swap_pool(user, None)}
