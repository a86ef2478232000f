"""What accounts use: disk, memory, this month's web traffic and CPU time.

Disk is measured (``du``, never following links, staying on one file system), memory is what
the account's memory cgroup holds, CPU time its cpuacct (v1) or cpu.stat (v2) counter, traffic
the bytes nginx sent for its site this month (the log and the one rotated last). One action
answers for any number of accounts, so a node costs one round trip however many it carries.
"""

from __future__ import annotations

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
    """Figures for each account (``None`` where the node cannot tell); traffic is counted
    for ``month`` as nginx writes it (``Dec/2026``), or not at all when it is empty."""
    if len(users) > MAX_ACCOUNTS:
        raise AgentError("invalid", f"at most {MAX_ACCOUNTS} accounts per request")
    names = [validate.linux_user(u) for u in users]
    if month and not _MONTH.fullmatch(month):
        raise AgentError("invalid", "month reads like Dec/2026")
    accounts = {}
    for user in names:
        accounts[user] = {
            "disk_mb": disk_mb(user),
            "memory_bytes": memory_bytes(user),
            "traffic_bytes": traffic_bytes(user, month) if month else 0,
            "cpu_ns": cpu_ns(user),
        }
    return {"changed": False, "accounts": accounts}
