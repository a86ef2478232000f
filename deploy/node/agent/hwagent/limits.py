"""An account's CPU, memory and process limits.

On systemd nodes (``SystemdSlices``): a slice per account with the plan's CPUQuota,
MemoryHigh/MemoryMax and TasksMax. On nodes without systemd (``CgroupFiles``): cgroup files
(v1: the cpu, memory and pids controllers, plus cpuacct for the usage figures; v2: one
``hostwright/<user>`` group). There the account owns only its groups' ``cgroup.procs`` (PHP-FPM
workers move themselves in on their first request); it cannot change a limit or move anything
out to an unlimited group. ``backend()`` picks one; the actions below stay the same.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from typing import Any, Protocol

from hwagent import system, validate
from hwagent.registry import action

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


class Backend(Protocol):
    def apply(self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int) -> bool: ...

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

    def apply(self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int) -> bool:
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


SLICE_DIR = "/etc/systemd/system"


class SystemdSlices:
    """One slice per account, ``hostwright-<user>.slice`` (under ``hostwright.slice``), with the
    plan's CPUQuota, MemoryHigh (90 % of the limit: reclaim before the hard stop), MemoryMax and
    TasksMax; systemd applies them to whatever runs in the slice. The unit file is root's, in
    /etc/systemd/system, written whole and renamed into place."""

    def unit(self, user: str) -> str:
        return f"{SLICE_DIR}/hostwright-{user}.slice"

    def exists(self, user: str) -> list[str]:
        return [u for u in (self.unit(user),) if os.path.isfile(u)]

    def apply(self, user: str, *, cpu_quota_us: int, memory_bytes: int, pids: int) -> bool:
        pwd.getpwnam(user)
        text = (
            "# Managed by Hostwright: the account's resource limits.\n"
            f"[Unit]\nDescription=Hostwright account {user}\n\n"
            f"[Slice]\nCPUQuota={cpu_quota_us // 1000}%\n"
            f"MemoryHigh={memory_bytes * 9 // 10}\nMemoryMax={memory_bytes}\n"
            f"TasksMax={pids}\n"
        )
        path = self.unit(user)
        with contextlib.suppress(OSError), open(path) as f:
            if f.read() == text:
                return False
        tmp = f"{path}.hw-new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        system.run(["systemctl", "daemon-reload"], what="reloading systemd")
        return True

    def remove(self, user: str) -> bool:
        path = self.unit(user)
        if not os.path.isfile(path):
            return False
        system.run(["systemctl", "stop", os.path.basename(path)], check=False)
        os.unlink(path)
        system.run(["systemctl", "daemon-reload"], what="reloading systemd")
        return True


def backend() -> Backend:
    return SystemdSlices() if system.have_systemd() else CgroupFiles()


@action("limits.set")
def set_limits(*, user: str, cpu_percent: int, memory_mb: int, processes: int) -> dict[str, Any]:
    """Apply the plan's CPU share (percent of one core), memory and process limits to the
    account and move its running processes under them. Checks the user exists first. On a
    node without cgroups nothing is applied and ``applied`` is false."""
    user = validate.linux_user(user)
    cpu = validate.positive_int(cpu_percent, name="CPU share", maximum=100 * 1024)
    memory = validate.positive_int(memory_mb, name="memory", maximum=1024 * 1024)
    procs = validate.positive_int(processes, name="processes", maximum=1_000_000)
    from hwagent.safefs import account

    account(user)
    b = backend()
    changed = b.apply(user, cpu_quota_us=cpu * 1000, memory_bytes=memory * 2**20, pids=procs)
    return {"changed": changed, "applied": bool(b.exists(user))}


@action("limits.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Remove the account's limits, moving any process left in them to the parent group."""
    user = validate.linux_user(user)
    return {"changed": backend().remove(user)}
