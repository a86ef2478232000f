"""The node services the resource tests talk to, started by the node's own bootstrap parts.

The parts are idempotent, so this is cheap when the node already runs (for example after the
engine's harness bootstrapped it). NODE_PROFILE=test and NODE_ACME=pebble make it a test node:
DNS on 5353, Pebble, mail on loopback only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hwagent import dns as agent_dns

from provisioning.resources import dns as hwdns
from tests.node.harness import run_logged

ROOT = Path(__file__).resolve().parents[2]
PARTS = ROOT / "deploy" / "node" / "parts"
DNS_PORT = 5353


def run_part(name: str) -> None:
    env = {
        **os.environ,
        "NODE_PROFILE": "test",
        "NODE_ACME": "pebble",
        "PDNS_LOCAL_PORT": str(DNS_PORT),
        "HW_NODE_LIB": str(PARTS.parent / "lib.sh"),
    }
    log = ROOT / "var" / "test-node" / f"part-{name}.log"
    result = run_logged(["bash", str(PARTS / name)], log=log, env=env, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}"


class AgentZones:
    """Zones on the node's PowerDNS through the node agent's own ``dns.*`` actions (run here,
    on the node), with the shape tests use: RRsets in, RRsets out."""

    def create_zone(self, zone: str, rrsets: list[hwdns.RRset]) -> bool:
        apex = hwdns.fqdn(zone)
        by_key = {(r.name, r.rtype): r for r in rrsets}
        ipv6 = by_key.get((apex, "AAAA"))
        extra = [
            {"name": r.name, "type": r.rtype, "ttl": r.ttl, "contents": list(r.contents)}
            for r in rrsets
            if r.rtype in agent_dns.EDITABLE_TYPES
        ]
        done = agent_dns.zone_ensure(
            domain=zone,
            ipv4=by_key[(apex, "A")].contents[0],
            ipv6=ipv6.contents[0] if ipv6 else None,
            nameservers=[n.rstrip(".") for n in by_key[(apex, "NS")].contents],
            records=extra,
        )
        return bool(done["created"])

    def get_zone(self, zone: str) -> list[hwdns.RRset] | None:
        got = agent_dns.zone_get(domain=zone)
        if not got["exists"]:
            return None
        return [
            hwdns.RRset(r["name"], r["type"], r["ttl"], tuple(r["contents"])) for r in got["rrsets"]
        ]

    def replace_rrset(self, zone: str, rrset: hwdns.RRset) -> int:
        body = {"name": rrset.name, "type": rrset.rtype, "ttl": rrset.ttl}
        done = agent_dns.records(
            domain=zone, replace=[{**body, "contents": list(rrset.contents)}], delete=[]
        )
        return int(done["serial"])

    def delete_rrset(self, zone: str, *, name: str, rtype: str) -> int:
        done = agent_dns.records(domain=zone, replace=[], delete=[[name, rtype]])
        return int(done["serial"])

    def delete_zone(self, zone: str) -> bool:
        return bool(agent_dns.zone_remove(domain=zone)["removed"])


@pytest.fixture(scope="session")
def powerdns_node() -> AgentZones:
    """PowerDNS on the node, started by its part; zones through the node agent's actions."""
    run_part("60-powerdns.sh")
    return AgentZones()


@pytest.fixture
def pdns(powerdns_node: AgentZones) -> AgentZones:
    return powerdns_node


@pytest.fixture
def zone_name(powerdns_node: AgentZones):
    """A fresh zone name; whatever the test left of that zone is deleted afterwards."""
    name = f"hw-{uuid.uuid4().hex[:10]}.test"
    yield name
    agent_dns.zone_remove(domain=name)


@pytest.fixture(scope="session")
def mail_node() -> None:
    run_part("80-mail.sh")


@pytest.fixture(scope="session")
def mariadb_node() -> None:
    """MariaDB on the node, started by its part."""
    run_part("50-mariadb.sh")
