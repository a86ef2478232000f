"""An account's CPU, memory and process limits.

On systemd nodes (``SystemdSlices``): the account's slice (``user-<uid>.slice``) with the
plan's CPUQuota, MemoryHigh/MemoryMax, TasksMax and IOWeight; the account's PHP-FPM master
(``hwagent.pools``), its cron jobs (``hwagent.cron``) and its SFTP sessions run in it. On nodes
without systemd (``CgroupFiles``): cgroup files (v1: the cpu, memory and pids controllers, plus
cpuacct for the usage figures; v2: one ``hostwright/<user>`` group). There the account owns
only its groups' ``cgroup.procs`` (PHP-FPM workers move themselves in on their first request);
it cannot change a limit or move anything out to an unlimited group. ``backend()`` picks one;
the actions below stay the same.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
from typing import Any, Protocol

from hwagent import system, validate
from hwagent.registry import action

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


class Backend(Protocol):
    def apply(
        self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int, io_weight: int = 100
    ) -> bool: ...

    def remove(self, user: str) -> bool: ...

    def exists(self, user: str) -> list[str]: ...


def _write(path: str, value: str) -> bool:
    with contextlib.suppress(OSError), open(path) as f:
        if f.read().strip() == value:
            return False
    with open(path, "w") as f:
        f.write(value)
    return True


def _pids_of(user: str) -> list[str]:
    proc = system.run(["pgrep", "-u", user], check=False)
    return proc.stdout.decode().split()


class CgroupFiles:
    """cgroup v1 or v2 through its files."""

    @property
    def v2(self) -> bool:
        return os.path.isfile(f"{ROOT}/cgroup.controllers")

    def dirs(self, user: str) -> list[str]:
        if self.v2:
            return [f"{ROOT}/hostwright/{user}"]
        return [
            f"{ROOT}/{c}/hostwright/{user}" for c in V1_CONTROLLERS if os.path.isdir(f"{ROOT}/{c}")
        ]

    def exists(self, user: str) -> list[str]:
        return [d for d in self.dirs(user) if os.path.isdir(d)]

    def apply(
        self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int, io_weight: int = 100
    ) -> bool:
        # The IO weight needs the io (v2) or blkio (v1) controller, which these nodes' kernels
        # do not give their hosts: it is a systemd node's setting only.
        uid = pwd.getpwnam(user).pw_uid
        changed = False
        if self.v2:
            d = f"{ROOT}/hostwright/{user}"
            os.makedirs(d, exist_ok=True)
            with contextlib.suppress(OSError):
                _write(f"{ROOT}/hostwright/cgroup.subtree_control", "+cpu +memory +pids")
            changed |= _write(f"{d}/cpu.max", f"{cpu_quota_us} 100000")
            changed |= _write(f"{d}/memory.max", str(memory_bytes))
            changed |= _write(f"{d}/pids.max", str(pids))
            os.chown(f"{d}/cgroup.procs", uid, -1)
        elif os.path.isdir(f"{ROOT}/pids"):
            for d in self.dirs(user):
                os.makedirs(d, exist_ok=True)
                # The account may move its own processes in; nothing else.
                os.chown(f"{d}/cgroup.procs", uid, -1)
            changed |= _write(f"{ROOT}/cpu/hostwright/{user}/cpu.cfs_period_us", "100000")
            changed |= _write(f"{ROOT}/cpu/hostwright/{user}/cpu.cfs_quota_us", str(cpu_quota_us))
            changed |= _write(
                f"{ROOT}/memory/hostwright/{user}/memory.limit_in_bytes", str(memory_bytes)
            )
            changed |= _write(f"{ROOT}/pids/hostwright/{user}/pids.max", str(pids))
        else:
            return False
        # Move the account's running processes in (new ones inherit their group).
        for d in self.exists(user):
            for pid in _pids_of(user):
                with contextlib.suppress(OSError), open(f"{d}/cgroup.procs", "w") as f:
                    f.write(pid)
        return changed

    def remove(self, user: str) -> bool:
        changed = False
        for d in self.exists(user):
            parent = os.path.dirname(os.path.dirname(d))
            with contextlib.suppress(OSError), open(f"{d}/cgroup.procs") as f:
                pids = f.read().split()
            for pid in pids:
                with contextlib.suppress(OSError), open(f"{parent}/cgroup.procs", "w") as out:
                    out.write(pid)
            with contextlib.suppress(OSError):
                os.rmdir(d)
                changed = True
        left = self.exists(user)
        if left:
            from hwagent.errors import AgentError

            raise AgentError(
                "busy", f"the limits of {user} are still in use", permanent=False, detail=str(left)
            )
        return changed


UNIT_DIR = "/etc/systemd/system"
DROPIN = "50-hostwright-{user}.conf"


def account_slice(user: str) -> str:
    """The account's slice: the one logind gives the user's sessions, ``user-<uid>.slice``.

    Its PHP-FPM, its cron jobs and its SFTP sessions (sshd's PAM session through
    pam_systemd) all land there, so one set of limits covers everything the account runs.
    """
    return f"user-{pwd.getpwnam(user).pw_uid}.slice"


class SystemdSlices:
    """The account's slice (``user-<uid>.slice``, see ``account_slice``) with the plan's
    CPUQuota, MemoryHigh (90 % of the limit: reclaim before the hard stop), MemoryMax,
    TasksMax and IOWeight, from a drop-in ``50-hostwright-<user>.conf`` (root's, in
    /etc/systemd/system, written whole and renamed into place). systemd applies the slice's
    settings to whatever runs in it; a daemon-reload applies a change to the running slice.

    The drop-in's name carries the account, so it is found again after the user is gone (a
    terminate removes the user first), and one left by an earlier account with the same uid
    is replaced, never inherited.
    """

    def dropin(self, user: str) -> str:
        return f"{UNIT_DIR}/{account_slice(user)}.d/{DROPIN.format(user=user)}"

    def _found(self, user: str) -> list[str]:
        return sorted(glob.glob(f"{UNIT_DIR}/user-*.slice.d/{DROPIN.format(user=user)}"))

    def exists(self, user: str) -> list[str]:
        return self._found(user)

    @staticmethod
    def text(user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int, io_weight: int) -> str:
        return (
            "# Managed by Hostwright: the account's resource limits.\n"
            f"[Unit]\nDescription=Hostwright account {user}\n\n"
            "[Slice]\nCPUAccounting=yes\nMemoryAccounting=yes\nTasksAccounting=yes\n"
            f"IOAccounting=yes\nCPUQuota={cpu_quota_us // 1000}%\n"
            f"MemoryHigh={memory_bytes * 9 // 10}\nMemoryMax={memory_bytes}\n"
            f"TasksMax={pids}\nIOWeight={io_weight}\n"
        )

    def apply(
        self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int, io_weight: int = 100
    ) -> bool:
        path = self.dropin(user)
        text = self.text(
            user, cpu_quota_us=cpu_quota_us, memory_bytes=memory_bytes, pids=pids,
            io_weight=io_weight,
        )  # fmt: skip
        changed = False
        # What an earlier layout or an earlier account with this uid left behind goes.
        stale = [p for p in self._found(user) if p != path]
        stale += [
            p for p in glob.glob(f"{os.path.dirname(path)}/{DROPIN.format(user='*')}") if p != path
        ]
        stale += [p for p in (f"{UNIT_DIR}/hostwright-{user}.slice",) if os.path.isfile(p)]
        for old in stale:
            changed |= system.remove_file(old)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        changed |= system.replace_file(path, text)
        if changed:
            system.run(["systemctl", "daemon-reload"], what="reloading systemd")
        return changed

    def remove(self, user: str) -> bool:
        found = self._found(user)
        legacy = f"{UNIT_DIR}/hostwright-{user}.slice"
        if os.path.isfile(legacy):
            system.run(["systemctl", "stop", os.path.basename(legacy)], check=False)
            found.append(legacy)
        if not found:
            return False
        for path in found:
            system.remove_file(path)
            if path.endswith(".conf"):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(path))  # only when nothing else is in it
        system.run(["systemctl", "daemon-reload"], what="reloading systemd")
        return True


def backend() -> Backend:
    return SystemdSlices() if system.have_systemd() else CgroupFiles()


@action("limits.set")
def set_limits(
    *, user: str, cpu_percent: int, memory_mb: int, processes: int, io_weight: int = 100
) -> dict[str, Any]:
    """Apply the plan's CPU share (percent of one core), memory, process limits and IO weight
    (1-10000, systemd's scale: 100 is the default share) to the account and move its running
    processes under them. Checks the user exists first. On a node without cgroups nothing is
    applied and ``applied`` is false."""
    user = validate.linux_user(user)
    cpu = validate.positive_int(cpu_percent, name="CPU share", maximum=100 * 1024)
    memory = validate.positive_int(memory_mb, name="memory", maximum=1024 * 1024)
    procs = validate.positive_int(processes, name="processes", maximum=1_000_000)
    weight = validate.positive_int(io_weight, name="IO weight", maximum=10_000)
    from hwagent.safefs import account

    account(user)
    b = backend()
    changed = b.apply(
        user, cpu_quota_us=cpu * 1000, memory_bytes=memory * 2**20, pids=procs, io_weight=weight
    )
    return {"changed": changed, "applied": bool(b.exists(user))}


@action("limits.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Remove the account's limits, moving any process left in them to the parent group."""
    user = validate.linux_user(user)
    return {"changed": backend().remove(user)}
