"""dns.* actions: validation of every argument, then zones and records in this node's PowerDNS."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hwagent import dns
from hwagent.errors import AgentError

NS = ["ns1.hostwright.test", "ns2.hostwright.test"]

ZONE = "example.com"


def ensure(**kw: Any) -> dict[str, Any]:
    return {"domain": ZONE, "ipv4": "192.0.2.1", "nameservers": NS, **kw}


def put(name: str, rtype: str, contents: list[str], ttl: int = 300, **extra: Any) -> dict[str, Any]:
    rrset = {"name": name, "type": rtype, "ttl": ttl, "contents": contents, **extra}
    return {"domain": ZONE, "replace": [rrset], "delete": []}


def drop(*pair: str) -> dict[str, Any]:
    return {"domain": ZONE, "replace": [], "delete": [list(pair)]}


BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (dns.zone_ensure, ensure(domain="exa mple.com")),
    (dns.zone_ensure, ensure(ipv4="999.0.2.1")),
    (dns.zone_ensure, ensure(nameservers=[])),
    (dns.zone_ensure, ensure(nameservers=["-x"])),
    (dns.zone_ensure, ensure(ipv6="::g")),
    (dns.zone_ensure, ensure(ttl=5)),
    (
        dns.zone_ensure,
        ensure(records=[{"name": "@", "type": "NS", "ttl": 300, "contents": ["x."]}]),
    ),
    (dns.zone_ensure, ensure(records=[{"name": "x.other.", "type": "A", "contents": ["1.2.3.4"]}])),
    (dns.zone_remove, {"domain": "../etc"}),
    (dns.zone_get, {"domain": "localhost"}),
    (dns.inventory, {"domains": ["ok.example", "bad_domain"]}),
    # the apex SOA and NS are never the customer's to change or remove
    (dns.records, put("@", "NS", ["ns.evil.example."])),
    (dns.records, drop("@", "NS")),
    (dns.records, drop("@", "SOA")),
    (dns.records, drop(ZONE + ".", "NS")),
    (dns.records, put("@", "SOA", ["x"])),
    # names outside the zone, bad data, TTLs, CNAME rules
    (dns.records, put("www.other.com.", "A", ["192.0.2.1"])),
    (dns.records, put("a b", "A", ["192.0.2.1"])),
    (dns.records, put("www", "A", ["2001:db8::1"])),
    (dns.records, put("www", "AAAA", ["192.0.2.1"])),
    (dns.records, put("www", "A", ["192.0.2.1"], ttl=30)),
    (dns.records, put("www", "A", [])),
    (dns.records, put("@", "CNAME", ["x.example."])),
    (dns.records, put("w", "CNAME", ["a.example.", "b.example."])),
    (dns.records, put("w", "CNAME", ["relative"])),
    (dns.records, put("@", "MX", ["mail.example.com."])),
    (dns.records, put("@", "TXT", ['"a" junk'])),
    (dns.records, put("@", "TXT", ['"a"\n"b"'])),
    (dns.records, put("_s._tcp", "SRV", ["1 2 x host."])),
    (dns.records, put("@", "CAA", ['0 issue; "x"'])),
    (dns.records, put("@", "PTR", ["x."])),
    (dns.records, put("@", "A", ["192.0.2.1"], extra=1)),
    (dns.records, drop("www")),
]


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_dns_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code == "invalid"


@pytest.fixture
def zone() -> Iterator[str]:
    name = f"ag-{uuid.uuid4().hex[:10]}.test"
    yield name
    dns.zone_remove(domain=name)


def rrsets(zone: str) -> dict[tuple[str, str], list[str]]:
    got = dns.zone_get(domain=zone)
    return {(r["name"], r["type"]): sorted(r["contents"]) for r in got["rrsets"]}


@pytest.mark.node
def test_zone_ensure_says_whether_it_created_and_records_keep_the_apex(zone: str) -> None:
    # given a zone made by the agent (and asked for again)
    first = dns.zone_ensure(domain=zone, ipv4="192.0.2.10", nameservers=NS)
    again = dns.zone_ensure(domain=zone, ipv4="192.0.2.10", nameservers=NS)
    assert (first["created"], again["created"]) == (True, False)
    apex = zone + "."
    before = rrsets(zone)
    assert before[(apex, "NS")] == ["ns1.hostwright.test.", "ns2.hostwright.test."]

    # when records change: www elsewhere, a TXT added, the apex A removed
    change = dns.records(
        domain=zone,
        replace=[
            {"name": "www", "type": "A", "ttl": 300, "contents": ["192.0.2.44"]},
            {"name": "_verify", "type": "TXT", "ttl": 300, "contents": ['"token=abc"']},
        ],
        delete=[["@", "A"]],
    )

    # then the zone has them, with a new serial, and the answer holds what was there before
    after = rrsets(zone)
    assert after[(f"www.{apex}", "A")] == ["192.0.2.44"]
    assert after[(f"_verify.{apex}", "TXT")] == ['"token=abc"']
    assert (apex, "A") not in after
    assert after[(apex, "NS")] == before[(apex, "NS")]
    assert change["serial"] > int(before[(apex, "SOA")][0].split()[2])
    previous = {(r["name"], r["type"]): r["contents"] for r in change["previous"]}
    assert previous == {(f"www.{apex}", "A"): ["192.0.2.10"], (apex, "A"): ["192.0.2.10"]}

    # when the previous RRsets are put back (an undo), the zone is as before but the serial
    dns.records(
        domain=zone,
        replace=change["previous"],
        delete=[[f"_verify.{apex}", "TXT"]],
    )
    restored = rrsets(zone)
    restored.pop((apex, "SOA"))
    before.pop((apex, "SOA"))
    assert restored == before

    # and removing the zone twice removes it once
    assert dns.zone_remove(domain=zone)["removed"] is True
    assert dns.zone_remove(domain=zone)["removed"] is False
    assert dns.zone_get(domain=zone)["exists"] is False


@pytest.mark.node
def test_a_cname_beside_other_data_is_refused_and_nothing_changes(zone: str) -> None:
    dns.zone_ensure(domain=zone, ipv4="192.0.2.10", nameservers=NS)
    before = rrsets(zone)
    with pytest.raises(AgentError) as err:
        dns.records(
            domain=zone,
            replace=[{"name": "www", "type": "CNAME", "ttl": 300, "contents": ["x.example."]}],
            delete=[],
        )
    assert err.value.code == "invalid" and "CNAME" in err.value.message
    assert rrsets(zone) == before


@pytest.mark.node
def test_records_in_a_missing_zone_are_not_found() -> None:
    with pytest.raises(AgentError) as err:
        dns.records(domain=f"missing-{uuid.uuid4().hex[:8]}.test", replace=[], delete=[["x", "A"]])
    assert err.value.code == "not_found"


@pytest.mark.node
def test_the_server_port_is_read_from_the_node() -> None:
    assert dns.server()["port"] == 5353


@pytest.mark.node
def test_zone_ensure_takes_the_mail_policy_records(zone: str) -> None:
    spf = '"v=spf1 ip4:127.0.0.1 mx -all"'
    dmarc = '"v=DMARC1; p=none"'
    records = [
        {"name": "@", "type": "TXT", "ttl": 3600, "contents": [spf]},
        {"name": "_dmarc", "type": "TXT", "ttl": 3600, "contents": [dmarc]},
    ]
    dns.zone_ensure(domain=zone, ipv4="192.0.2.10", nameservers=NS, records=records)
    got = rrsets(zone)
    assert got[(zone + ".", "TXT")] == [spf]
    assert got[(f"_dmarc.{zone}.", "TXT")] == [dmarc]
    assert got[(zone + ".", "NS")] == ["ns1.hostwright.test.", "ns2.hostwright.test."]
