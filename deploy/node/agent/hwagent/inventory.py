"""What the node holds, resource kind by kind: for drift detection and for the check that
nothing of an account is left after it was terminated.

Each kind is a function listing the names the node holds of it; with an account, only the
names that belong to that account (its own name, or names it prefixes with ``<user>_``).
Other modules add their kinds with ``@kind("zone")`` (DNS zones, mail domains...), so one
``inventory.list`` answers for everything. It changes nothing.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from typing import Any

from hwagent import system, validate
from hwagent.errors import AgentError
from hwagent.registry import action

Lister = Callable[[str], list[str]]
KINDS: dict[str, Lister] = {}


def kind(name: str) -> Callable[[Lister], Lister]:
    def register(func: Lister) -> Lister:
        KINDS[name] = func
        return func

    return register


def belongs(name: str, account: str) -> bool:
    """Whether a per-account name is the account's: itself or ``<account>_...``."""
    return not account or name == account or name.startswith(account + "_")


def _files(directory: str, prefix: str, suffix: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(
        n[len(prefix) : len(n) - len(suffix)]
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and len(n) > len(prefix) + len(suffix)
    )


@kind("user")
def users(account: str) -> list[str]:
    """Linux users tagged as hosting accounts (GECOS ``hostwright service <id>``)."""
    return sorted(
        p.pw_name
        for p in pwd.getpwall()
        if p.pw_gecos.startswith("hostwright service ") and (not account or p.pw_name == account)
    )


@kind("home")
def homes(account: str) -> list[str]:
    if account:
        return [account] if os.path.lexists(f"/home/{account}") else []
    tagged = set(users(""))
    return sorted(n for n in os.listdir("/home") if n in tagged)


@kind("pool")
def pools(account: str) -> list[str]:
    from hwagent.pools import ACCOUNT_DIR, POOL_DIR

    names = set(_files(POOL_DIR, "hw-", ".conf")) | set(_files(ACCOUNT_DIR, "", ".conf"))
    return sorted(n for n in names if not account or n == account)


@kind("site")
def sites(account: str) -> list[str]:
    from hwagent.sites import SITES_DIR

    return [n for n in _files(SITES_DIR, "", ".conf") if not account or n == account]


@kind("limits")
def limits(account: str) -> list[str]:
    import glob

    from hwagent.limits import ROOT, UNIT_DIR, V1_CONTROLLERS

    found: set[str] = set()
    # systemd nodes: the drop-ins of the accounts' slices (50-hostwright-<user>.conf).
    for path in glob.glob(f"{UNIT_DIR}/user-*.slice.d/50-hostwright-*.conf"):
        found.add(os.path.basename(path)[len("50-hostwright-") : -len(".conf")])
    for base in [f"{ROOT}/hostwright"] + [f"{ROOT}/{c}/hostwright" for c in V1_CONTROLLERS]:
        try:
            found.update(n for n in os.listdir(base) if os.path.isdir(f"{base}/{n}"))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return sorted(n for n in found if not account or n == account)


def _sql(query: str) -> list[str]:
    proc = system.run(
        ["mysql", "--protocol=socket", "-uroot", "-N", "-B", "-e", query],
        what="listing MariaDB",
        timeout=30,
    )
    return proc.stdout.decode().split()


SYSTEM_DATABASES = {"information_schema", "mysql", "performance_schema", "sys"}


@kind("database")
def databases(account: str) -> list[str]:
    names = [n for n in _sql("SHOW DATABASES") if n not in SYSTEM_DATABASES]
    return sorted(n for n in names if belongs(n, account) and (account or "_" in n))


@kind("database_user")
def database_users(account: str) -> list[str]:
    names = _sql("SELECT DISTINCT user FROM mysql.user WHERE host = 'localhost'")
    hosted = set(users(""))
    return sorted(
        n
        for n in names
        if belongs(n, account) and (account or n in hosted or n.split("_")[0] in hosted)
    )


@action("inventory.list")
def inventory(*, kinds: list[str] | None = None, account: str = "") -> dict[str, Any]:
    """The names the node holds of each kind (all kinds by default), for one account when
    ``account`` is given. ``kinds`` answers the known kinds' names when one is unknown."""
    if account:
        account = validate.linux_user(account)
    wanted = kinds if kinds is not None else sorted(KINDS)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise AgentError(
            "invalid", f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(sorted(KINDS))}"
        )
    return {"changed": False, "found": {k: KINDS[k](account) for k in wanted}}
