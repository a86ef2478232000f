"""An account's PHP-FPM pool, running as the account's user, on ``/run/php/hw-<user>.sock``
(nginx's group may connect). The configuration is built here from typed values, checked with
``php-fpm8.2 -t`` and loaded with a graceful reload; the action returns once PHP-FPM serves the
pool (or has stopped serving it, for a removal).

Two layouts, by node:

- **systemd nodes**: one PHP-FPM master per account, ``hostwright-php@<user>.service`` (a
  template unit), reading ``/etc/hostwright/php-fpm/<user>.conf`` (a ``[global]`` section and
  the account's one pool). A drop-in puts the service in the account's slice
  (``hwagent.limits.account_slice``), so the master and its workers are under the plan's
  limits from their first instruction and the slice's counters are the account's PHP. It is
  enabled and started when the pool is made (not on demand: PHP-FPM takes no listening socket
  from systemd), and its pool is ``pm = ondemand``, so an idle account costs one master
  process. A change reloads only that account's master.
- **nodes without systemd**: the shared master reads ``/etc/php/8.2/fpm/pool.d/hw-<user>.conf``;
  its workers move themselves into the account's cgroups on their first request
  (``cgroup-join.php``, see ``hwagent.limits``).
"""

from __future__ import annotations

import contextlib
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
ACCOUNT_DIR = "/etc/hostwright/php-fpm"
UNIT_DIR = "/etc/systemd/system"
TEMPLATE_UNIT = "hostwright-php@.service"
TEMPLATE_TEXT = f"""# Managed by Hostwright (hwagent.pools): one PHP-FPM master per hosting account.
[Unit]
Description=PHP-FPM of hosting account %i
After=network.target
ConditionPathExists={ACCOUNT_DIR}/%i.conf

[Service]
Type=notify
ExecStartPre=/usr/bin/install -d -m 0755 /run/php
ExecStart=/usr/sbin/php-fpm{PHP} --nodaemonize --fpm-config {ACCOUNT_DIR}/%i.conf
ExecReload=/bin/kill -USR2 $MAINPID
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
"""


def pool_path(user: str) -> str:
    return f"{POOL_DIR}/hw-{user}.conf"


def pool_socket(user: str) -> str:
    return f"/run/php/hw-{user}.sock"


def account_config_path(user: str) -> str:
    return f"{ACCOUNT_DIR}/{user}.conf"


def account_unit(user: str) -> str:
    return f"hostwright-php@{user}.service"


def _slice_dropin(user: str) -> str:
    return f"{UNIT_DIR}/{account_unit(user)}.d/10-slice.conf"


def pool_config(*, user: str, workers: int, memory_mb: int, own_master: bool = False) -> str:
    """The pool's section; with ``own_master``, a whole configuration for the account's own
    master (its cgroup is the slice's: no joining, no cgroup paths in open_basedir)."""
    home = f"/home/{user}"
    tmp = f"{home}/tmp"  # noqa: S108  (the account's own, not a shared one)
    memory_limit = max(32, min(memory_mb // max(workers, 1), 1024))
    if own_master:
        head = f"""; managed by Hostwright: changes are overwritten
[global]
error_log = syslog
syslog.ident = php-fpm-{user}
; A reload lets requests in flight finish (for up to 10 s) instead of cutting them short.
process_control_timeout = 10s

"""
        basedir = f"{home}/"
        join = ""
    else:
        head = "; managed by Hostwright: changes are overwritten\n"
        basedir = ":".join(
            [f"{home}/", f"{CGROUP_JOIN_DIR}/", "/proc/self/cgroup"]
            + [
                f"/sys/fs/cgroup/{c}/hostwright/{user}/"
                for c in ("cpu", "cpuacct", "memory", "pids")
            ]
        )
        join = (
            "; Workers are forked by the shared master; each joins the account's cgroups on its"
            " first\n; request (the account owns only its cgroup.procs files, see hwagent.limits)."
            f"\nphp_admin_value[auto_prepend_file] = {CGROUP_JOIN_DIR}/cgroup-join.php\n"
        )
    return f"""{head}[hw-{user}]
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
{join}; Temporary files, uploads and sessions stay in the account's own tmp, not a shared /tmp.
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


# --- systemd nodes: the account's own master -------------------------------------------------


def _wants_link(user: str) -> str:
    return f"{UNIT_DIR}/multi-user.target.wants/{account_unit(user)}"


def _ensure_units(user: str) -> bool:
    """The template unit and the drop-in placing the account's instance in its slice; reloads
    systemd when either changed. Returns whether the slice drop-in changed (a running master
    then has to be restarted to move)."""
    from hwagent.limits import account_slice

    template = system.replace_file(f"{UNIT_DIR}/{TEMPLATE_UNIT}", TEMPLATE_TEXT)
    dropin = _slice_dropin(user)
    os.makedirs(os.path.dirname(dropin), mode=0o755, exist_ok=True)
    moved = system.replace_file(
        dropin,
        "# Managed by Hostwright: the account's PHP-FPM runs in the account's slice.\n"
        f"[Service]\nSlice={account_slice(user)}\n",
    )
    if template or moved:
        system.run(["systemctl", "daemon-reload"], what="reloading systemd")
    return moved


def _start(user: str, *, restart: bool = False) -> None:
    unit = account_unit(user)
    if not os.path.islink(_wants_link(user)):
        system.run(["systemctl", "enable", "--quiet", unit], what="enabling the account's PHP-FPM")
    proc = system.run(
        ["systemctl", "restart" if restart else "reload-or-restart", unit], check=False
    )
    if proc.returncode != 0:
        status = system.run(["systemctl", "status", "--no-pager", "-n", "20", unit], check=False)
        raise AgentError(
            "failed",
            "the account's PHP-FPM could not be started",
            detail=system.output_tail(proc) + "\n" + system.output_tail(status),
        )


def _settle_own(user: str) -> None:
    """The master serves the pool once its socket is there: a master that stopped (a crash
    before, or a start that raced) is started once more before giving up."""
    socket = pool_socket(user)
    if _socket_state(socket, True, 5):
        return
    with system.node_lock(f"fpm-{user}"):
        _start(user, restart=True)
    if not _socket_state(socket, True, 5):
        raise AgentError("busy", f"PHP-FPM did not start the pool of {user}", permanent=False)


def ensure_own_master(user: str, content: str) -> bool:
    """Put the account's configuration in place (checked with ``php-fpm -t`` first), make sure
    its master runs in the account's slice, and reload it when the configuration changed."""
    changed = False
    if os.path.exists(pool_path(user)):
        # Made by the shared master's layout before: that master lets go of the socket first.
        changed |= swap_pool(user, None)
    moved = _ensure_units(user)
    os.makedirs(ACCOUNT_DIR, mode=0o755, exist_ok=True)
    path = account_config_path(user)
    changed |= _confswap.swap_config(
        f"fpm-{user}",
        path,
        content,
        check=[f"php-fpm{PHP}", "-t", "--fpm-config", path],
        reload=lambda: _start(user, restart=moved),
    )
    if moved and not changed:
        with system.node_lock(f"fpm-{user}"):
            _start(user, restart=True)
    _settle_own(user)
    return changed or moved


def remove_own_master(user: str) -> bool:
    """Stop and disable the account's master and remove its configuration and drop-in."""
    path = account_config_path(user)
    dropin = _slice_dropin(user)
    changed = False
    with system.node_lock(f"fpm-{user}"):
        if os.path.exists(path) or os.path.exists(dropin) or os.path.islink(_wants_link(user)):
            unit = account_unit(user)
            system.run(["systemctl", "disable", "--now", "--quiet", unit], check=False)
            changed |= system.remove_file(path)
            changed |= system.remove_file(dropin)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(dropin))
            system.run(["systemctl", "daemon-reload"], what="reloading systemd")
    if os.path.exists(pool_path(user)):
        changed |= swap_pool(user, None)
    socket = pool_socket(user)
    if not _socket_state(socket, False, 5):
        system.remove_file(socket)  # left by a master that was killed
    return changed


@action("pool.ensure")
def ensure(*, user: str, workers: int, memory_mb: int) -> dict[str, Any]:
    """The account's pool with ``workers`` PHP processes at most and a memory limit per
    process from the plan's memory. Checks the user exists first. On a systemd node the pool
    has a master of its own in the account's slice (see the module's docstring). The same
    configuration changes nothing; a failed check leaves the previous pool live
    (``invalid``)."""
    user = validate.linux_user(user)
    workers = validate.positive_int(workers, name="PHP workers", maximum=500)
    memory_mb = validate.positive_int(memory_mb, name="memory", maximum=1024 * 1024)
    from hwagent.safefs import account

    account(user)
    if system.have_systemd():
        content = pool_config(user=user, workers=workers, memory_mb=memory_mb, own_master=True)
        return {"changed": ensure_own_master(user, content), "socket": pool_socket(user)}
    content = pool_config(user=user, workers=workers, memory_mb=memory_mb)
    return {"changed": swap_pool(user, content), "socket": pool_socket(user)}


@action("pool.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Stop serving the account's pool and remove its files (nothing to do when gone)."""
    user = validate.linux_user(user)
    if system.have_systemd():
        return {"changed": remove_own_master(user)}
    return {"changed": swap_pool(user, None)}
