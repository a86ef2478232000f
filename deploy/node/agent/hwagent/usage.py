"""What accounts use: disk, memory, this month's web traffic and CPU time.

Disk is measured (``du``, never following links, staying on one file system), traffic is the
bytes nginx sent for its site this month (the log and the one rotated last). Memory, CPU time,
tasks and IO come from the account's own counters: on systemd nodes its slice's
(``CPUUsageNSec``, ``MemoryCurrent``, ``TasksCurrent``, ``IOReadBytes``, ``IOWriteBytes``,
read for every account with one ``systemctl show``; a counter whose controller the node lacks
is ``None``, except tasks, then counted from the slice's cgroup); elsewhere its cgroups'
(memory, cpuacct on v1 or cpu.stat on v2). One action answers for any number of accounts, so
a node costs one round trip however many it carries.
"""

from __future__ import annotations

import os
import pwd
import re
from typing import Any

from hwagent import system, validate
from hwagent.errors import AgentError
from hwagent.logs import log_path
from hwagent.registry import action

CG = "/sys/fs/cgroup"
_MONTH = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/[0-9]{4}")
MAX_ACCOUNTS = 5000


def _read_int(path: str, field: str = "") -> int | None:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    if field:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == field and parts[1].isdigit():
                return int(parts[1])
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def disk_mb(user: str) -> int | None:
    proc = system.run(["du", "-s", "-x", "-P", "-m", f"/home/{user}"], check=False, timeout=300)
    first = proc.stdout.decode().split()[:1]
    return int(first[0]) if first and first[0].isdigit() else None


def memory_bytes(user: str) -> int | None:
    for path in (
        f"{CG}/hostwright/{user}/memory.current",
        f"{CG}/memory/hostwright/{user}/memory.usage_in_bytes",
    ):
        value = _read_int(path)
        if value is not None:
            return value
    return None


def cpu_ns(user: str) -> int | None:
    usec = _read_int(f"{CG}/hostwright/{user}/cpu.stat", "usage_usec")
    if usec is not None:
        return usec * 1000
    return _read_int(f"{CG}/cpuacct/hostwright/{user}/cpuacct.usage")


SLICE_COUNTERS = {
    "CPUUsageNSec": "cpu_ns",
    "MemoryCurrent": "memory_bytes",
    "TasksCurrent": "tasks",
    "IOReadBytes": "io_read_bytes",
    "IOWriteBytes": "io_write_bytes",
}
UNSET = 2**64 - 1  # what systemd shows for a counter it cannot read


def _counter(text: str) -> int | None:
    if not text.isdigit() or int(text) >= UNSET:
        return None
    return int(text)


def _cgroup_tasks(slice_name: str) -> int | None:
    """Threads in the slice's cgroup and below (when systemd has no pids controller to ask)."""
    top = f"{CG}/user.slice/{slice_name}"
    if not os.path.isdir(top):
        return None
    total = 0
    for directory, _, files in os.walk(top):
        if "cgroup.threads" in files:
            try:
                with open(f"{directory}/cgroup.threads") as f:
                    total += sum(1 for _ in f)
            except OSError:
                continue
    return total


def slice_counters(users: list[str]) -> dict[str, dict[str, int | None]]:
    """Each account's slice counters (by account name), from one ``systemctl show``."""
    slices: dict[str, str] = {}
    for user in users:
        try:
            slices[f"user-{pwd.getpwnam(user).pw_uid}.slice"] = user
        except KeyError:
            continue
    if not slices:
        return {}
    props = ",".join(["Id", *SLICE_COUNTERS])
    proc = system.run(
        ["systemctl", "show", "-p", props, *slices], what="reading the slices' counters"
    )
    found: dict[str, dict[str, int | None]] = {}
    for block in proc.stdout.decode().split("\n\n"):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = values.get("Id", "")
        account = slices.get(unit)
        if account is None:
            continue
        figures = {name: _counter(values.get(prop, "")) for prop, name in SLICE_COUNTERS.items()}
        if figures["tasks"] is None:
            figures["tasks"] = _cgroup_tasks(unit)
        found[account] = figures
    return found


def traffic_bytes(user: str, month: str) -> int:
    """Bytes sent this month: in nginx's combined format the time is field 4, the bytes 10."""
    needle = f"/{month}:"
    total = 0
    for path in (log_path(user, "access") + ".1", log_path(user, "access")):
        try:
            f = open(path, "rb")  # noqa: SIM115
        except OSError:
            continue
        with f:
            for raw in f:
                fields = raw.split()
                if len(fields) > 9 and needle.encode() in fields[3] and fields[9].isdigit():
                    total += int(fields[9])
    return total


@action("usage.measure")
def measure(*, users: list[str], month: str = "") -> dict[str, Any]:
    """Figures for each account (``None`` where the node cannot tell): ``disk_mb``,
    ``traffic_bytes``, ``memory_bytes``, ``cpu_ns`` and, on systemd nodes, the slice's
    ``tasks``, ``io_read_bytes`` and ``io_write_bytes``. Traffic is counted for ``month`` as
    nginx writes it (``Dec/2026``), or not at all when it is empty."""
    if len(users) > MAX_ACCOUNTS:
        raise AgentError("invalid", f"at most {MAX_ACCOUNTS} accounts per request")
    names = [validate.linux_user(u) for u in users]
    if month and not _MONTH.fullmatch(month):
        raise AgentError("invalid", "month reads like Dec/2026")
    slices = slice_counters(names) if system.have_systemd() else {}
    accounts = {}
    for user in names:
        figures: dict[str, Any] = {
            "disk_mb": disk_mb(user),
            "traffic_bytes": traffic_bytes(user, month) if month else 0,
        }
        if system.have_systemd():
            empty: dict[str, int | None] = dict.fromkeys(SLICE_COUNTERS.values())
            figures.update(slices.get(user, empty))
        else:
            figures.update(memory_bytes=memory_bytes(user), cpu_ns=cpu_ns(user))
        accounts[user] = figures
    return {"changed": False, "accounts": accounts}
