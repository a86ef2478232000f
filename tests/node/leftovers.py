"""The check that the test suite leaves nothing behind on the loopback node.

Registered from ``tests/conftest.py``. At the start of the session it notes the zones
(PowerDNS's API), mail domains and maildirs, certificates and backups the node holds; at
the end it looks again, and every one that is new, and whose name this session made, is
reported and fails the session (exit status 1, with a "leftovers on the node" section).

Several sessions share the node, so a name counts only when this session made it: the
domains and Linux users of the services its tests created (a signal on ``Service``), and
the names passed to the node agent's ensure functions its tests call in this process
(``hwagent.dns.zone_ensure``, ``hwagent.mail.domain_ensure`` and ``mailbox_ensure``,
``hwagent.certs.install``, ``hwagent.backups.create``). What other sessions make, and what
was there before, is never counted.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PDNS_API = "http://127.0.0.1:8081/api/v1/servers/localhost/zones"
PDNS_KEY = Path("/etc/hostwright/pdns-api-key")
MAIL_DOMAINS = Path("/etc/hostwright/mail/domains")
MAILDIRS = Path("/var/mail/vhosts")
CERTS = Path("/etc/hostwright/certs")
BACKUPS = Path("/var/backups/hostwright")

Snapshot = dict[str, set[str]]

# Names this session made: domains (zones, mail domains, maildirs, certificates) and
# accounts (backups).
made_domains: set[str] = set()
made_accounts: set[str] = set()
_start: Snapshot | None = None


def _entries(directory: Path) -> set[str]:
    try:
        return {p.name.lower() for p in directory.iterdir() if p.is_dir()}
    except OSError:
        return set()


def _zones() -> set[str]:
    try:
        key = PDNS_KEY.read_text().strip()
        request = urllib.request.Request(PDNS_API, headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return {str(z["name"]).rstrip(".").lower() for z in json.loads(response.read())}
    except (OSError, ValueError, urllib.error.URLError):
        return set()


def _mail_domains() -> set[str]:
    try:
        lines = MAIL_DOMAINS.read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[0].lower() for line in lines if line.strip()}


def node_snapshot() -> Snapshot:
    """What the node holds of each kind the check looks at (names, lower-case)."""
    return {
        "zone": _zones(),
        "mail domain": _mail_domains(),
        "maildir": _entries(MAILDIRS),
        "certificate": _entries(CERTS),
        "backup": _entries(BACKUPS),
    }


def leftovers(start: Snapshot, end: Snapshot) -> list[str]:
    """What is new since ``start`` and was made by this session, as ``kind name`` lines."""
    found = []
    for kind, names in sorted(end.items()):
        mine = made_accounts if kind == "backup" else made_domains
        found += [
            f"{kind} {name}" for name in sorted(names - start.get(kind, set())) if name in mine
        ]
    return found


def _noting(func: Callable[..., Any], note: Callable[[dict[str, Any]], None]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        note(kwargs)
        return func(*args, **kwargs)

    wrapper.__wrapped_by_leftovers__ = True  # type: ignore[attr-defined]
    return wrapper


def _domain_of(value: object) -> str:
    return str(value or "").rsplit("@", 1)[-1].rstrip(".").lower()


def _watch_agent() -> None:
    """Note the names the tests' own calls of the node agent's functions make."""
    try:
        from hwagent import backups, certs, dns, mail
    except ImportError:
        return
    watched = [
        (dns, "zone_ensure", lambda kw: made_domains.add(_domain_of(kw.get("domain")))),
        (mail, "domain_ensure", lambda kw: made_domains.add(_domain_of(kw.get("domain")))),
        (mail, "mailbox_ensure", lambda kw: made_domains.add(_domain_of(kw.get("address")))),
        (certs, "install", lambda kw: made_domains.add(_domain_of(kw.get("domain")))),
        (backups, "create", lambda kw: made_accounts.add(str(kw.get("account", "")).lower())),
    ]
    for module, name, note in watched:
        func = getattr(module, name)
        if not getattr(func, "__wrapped_by_leftovers__", False):
            setattr(module, name, _noting(func, note))


def _watch_services() -> None:
    from django.db.models.signals import post_save

    def noted(sender: Any, instance: Any, **kwargs: Any) -> None:
        made_domains.add(str(instance.domain).lower())
        made_accounts.add(str(instance.username).lower())

    post_save.connect(noted, sender="provisioning.Service", weak=False, dispatch_uid="leftovers")


def _on_node() -> bool:
    return os.geteuid() == 0 and Path("/etc/hostwright").is_dir()


def pytest_sessionstart(session: pytest.Session) -> None:
    global _start
    if not _on_node() or os.environ.get("HW_LEFTOVERS_CHECK", "1") == "0":
        return
    _start = node_snapshot()
    _watch_agent()
    _watch_services()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _start is None or not (made_domains or made_accounts):
        return
    found = leftovers(_start, node_snapshot())
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "leftovers on the node", red=True)
        for line in found:
            reporter.write_line(f"left behind by this session: {line}")
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
