"""DNS zones on the node's real PowerDNS, checked by asking the nameserver with dnspython."""

from __future__ import annotations

import datetime as dt

import pytest
from hwagent import dns as agent_dns
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import dns as hwdns

from .conftest import DNS_PORT, AgentZones

NS = ["ns1.hostwright.test", "ns2.hostwright.test"]


def initial(zone: str, serial: int = 2026010101) -> list[hwdns.RRset]:
    return hwdns.zone_rrsets(
        domain=zone, ipv4="127.0.0.1", ipv6="::1", nameservers=NS, serial=serial
    )


# --- record data, names and serials (no node needed) --------------------------------------


@pytest.mark.parametrize(
    ("rtype", "content", "stored"),
    [
        ("A", "192.0.2.10", "192.0.2.10"),
        ("AAAA", "2001:db8::1", "2001:db8::1"),
        ("CNAME", "www", "www.example.com."),
        ("MX", "10 mail", "10 mail.example.com."),
        ("MX", "20 mx.other.net.", "20 mx.other.net."),
        ("TXT", "v=spf1 a mx -all", '"v=spf1 a mx -all"'),
        ("TXT", 'say "hi"', '"say \\"hi\\""'),
        ("SRV", "10 5 5060 sip.example.com.", "10 5 5060 sip.example.com."),
        ("CAA", '0 issue "letsencrypt.org"', '0 issue "letsencrypt.org"'),
    ],
)
def test_valid_record_data_is_returned_in_the_form_powerdns_stores(rtype, content, stored):
    assert hwdns.validate_record(zone="example.com", rtype=rtype, content=content) == stored


@pytest.mark.parametrize(
    ("rtype", "content"),
    [
        ("A", "999.1.1.1"),
        ("A", "192.0.2.1; rm -rf /"),
        ("AAAA", "192.0.2.1"),
        ("MX", "mail.example.com"),  # no preference
        ("MX", "ten mail"),
        ("SRV", "10 5 sip.example.com."),
        ("CAA", "0 issue letsencrypt.org extra"),
        ("CNAME", "a..b"),
        ("TXT", "line one\nline two"),
        ("NS", "ns1.example.com."),  # not editable by customers
        ("PTR", "x.example.com."),
        ("A", ""),
    ],
)
def test_invalid_record_data_is_refused(rtype, content):
    with pytest.raises(ProvisioningRefused):
        hwdns.validate_record(zone="example.com", rtype=rtype, content=content)


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("@", "example.com."),
        ("", "example.com."),
        ("www", "www.example.com."),
        ("_sip._tcp", "_sip._tcp.example.com."),
        ("*", "*.example.com."),
        ("shop.example.com.", "shop.example.com."),
    ],
)
def test_record_names_are_made_absolute_inside_the_zone(name, owner):
    assert hwdns.owner_name(zone="example.com", name=name) == owner


@pytest.mark.parametrize("name", ["a b", "x;y", "../etc", "a.*", "-bad", "é$"])
def test_bad_record_names_are_refused(name):
    with pytest.raises(ProvisioningRefused):
        hwdns.owner_name(zone="example.com", name=name)


def test_serials_follow_the_date_and_always_increase():
    today = dt.date(2026, 11, 22)
    assert hwdns.next_serial(1, today) == 2026112201
    assert hwdns.next_serial(2026112201, today) == 2026112202
    assert hwdns.next_serial(2026112299, today) == 2026112300
    assert hwdns.next_serial(2030010101, today) == 2030010102


def test_cname_on_the_apex_is_refused():
    with pytest.raises(ProvisioningRefused, match="domain itself"):
        hwdns.make_rrset(zone="example.com", name="@", rtype="CNAME", contents=["x.net."], ttl=300)


def test_ttl_out_of_range_is_refused():
    with pytest.raises(ProvisioningRefused, match="TTL"):
        hwdns.make_rrset(zone="example.com", name="a", rtype="A", contents=["192.0.2.1"], ttl=5)


@pytest.mark.parametrize(
    ("rtype", "content"),
    [
        ("A", "192.0.2.10"),
        ("CNAME", "www"),
        ("MX", "10 mail"),
        ("TXT", 'say "hi"'),
        ("TXT", "x" * 300),
        ("SRV", "10 5 5060 sip"),
        ("CAA", '0 issue "letsencrypt.org"'),
        ("AAAA", "2001:DB8::1"),
    ],
)
def test_what_the_panel_sends_the_node_accepts_unchanged(rtype, content):
    # the node agent checks record data again: the panel's form of it must pass as it is
    stored = hwdns.validate_record(zone="example.com", rtype=rtype, content=content)
    assert agent_dns.check_content(rtype, stored) == stored


# --- the real PowerDNS, through the node agent's actions --------------------------------------


def today_serial() -> int:
    return hwdns.next_serial(0, dt.datetime.now(dt.UTC).date())


def make_zone(zone: str) -> bool:
    return AgentZones().create_zone(zone, initial(zone, serial=today_serial()))


def change(zone: str, rrset: hwdns.RRset | None = None, delete=()) -> int:
    replace = []
    if rrset is not None:
        replace = [
            {
                "name": rrset.name,
                "type": rrset.rtype,
                "ttl": rrset.ttl,
                "contents": list(rrset.contents),
            }
        ]
    result = agent_dns.records(domain=zone, replace=replace, delete=[list(d) for d in delete])
    return int(result["serial"])


@pytest.mark.node
def test_created_zone_is_served_with_soa_ns_a_aaaa_mx_and_spf(zone_name):
    # when the zone is created
    assert make_zone(zone_name) is True

    # then the nameserver answers authoritatively with the records a domain starts with
    expected = initial(zone_name, serial=today_serial())
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT, expect=expected)
    assert check.ok, check.problems
    assert check.serial == today_serial()
    assert check.answers[f"www.{zone_name}. A"] == ["127.0.0.1"]
    assert check.answers[f"{zone_name}. AAAA"] == ["::1"]
    assert check.answers[f"{zone_name}. MX"] == [f"10 mail.{zone_name}."]
    assert check.answers[f"{zone_name}. TXT"] == ['"v=spf1 mx ip4:127.0.0.1 ip6:::1 -all"']
    assert check.answers[f"_dmarc.{zone_name}. TXT"] == [
        f'"v=DMARC1; p=none; rua=mailto:postmaster@{zone_name}; adkim=r; aspf=r"'
    ]
    assert sorted(check.answers[f"{zone_name}. NS"]) == [
        "ns1.hostwright.test.",
        "ns2.hostwright.test.",
    ]
    assert check.as_dict()["ok"] is True


@pytest.mark.node
def test_creating_a_zone_twice_leaves_one_zone(zone_name):
    make_zone(zone_name)
    # when it is created again (a retried step), then nothing new was created
    assert make_zone(zone_name) is False
    rrsets = agent_dns.zone_get(domain=zone_name)["rrsets"]
    keys = [(r["name"], r["type"]) for r in rrsets]
    assert len(keys) == len(set(keys))
    assert len(rrsets) == len(initial(zone_name))


@pytest.mark.node
def test_deleted_zone_is_no_longer_served_and_deleting_again_is_a_no_op(zone_name):
    make_zone(zone_name)
    first = agent_dns.zone_remove(domain=zone_name)["removed"]
    second = agent_dns.zone_remove(domain=zone_name)["removed"]
    assert (first, second) == (True, False)
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT)
    assert not check.ok
    assert any("REFUSED" in p for p in check.problems)
    assert agent_dns.zone_get(domain=zone_name)["exists"] is False


@pytest.mark.node
def test_replacing_an_rrset_is_served_with_a_new_serial(zone_name):
    make_zone(zone_name)

    # when the customer points www elsewhere and adds a CAA record
    www = hwdns.make_rrset(zone=zone_name, name="www", rtype="A", contents=["192.0.2.7"], ttl=300)
    caa = hwdns.make_rrset(
        zone=zone_name, name="@", rtype="CAA", contents=['0 issue "letsencrypt.org"'], ttl=300
    )
    serial_1 = change(zone_name, www)
    serial_2 = change(zone_name, caa)

    # then the nameserver answers the new data, and the serial went up each time
    assert serial_2 > serial_1 > today_serial()
    _, data, aa = hwdns.query(f"www.{zone_name}", "A", nameserver="127.0.0.1", port=DNS_PORT)
    assert (data, aa) == (["192.0.2.7"], True)
    _, data, _ = hwdns.query(zone_name, "CAA", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == ['0 issue "letsencrypt.org"']
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT)
    assert check.serial == serial_2

    # and deleting the CAA record removes it
    change(zone_name, delete=[(zone_name + ".", "CAA")])
    _, data, _ = hwdns.query(zone_name, "CAA", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == []


@pytest.mark.node
def test_a_change_over_the_record_limit_is_refused_and_nothing_changes(zone_name):
    make_zone(zone_name)
    before = agent_dns.zone_get(domain=zone_name)["rrsets"]
    # when a change would pass the zone's limit of records
    many = hwdns.RRset(
        f"many.{zone_name}.",
        "A",
        300,
        tuple(f"192.0.{i // 250}.{i % 250 + 1}" for i in range(agent_dns.MAX_RECORDS_PER_ZONE)),
    )
    with pytest.raises(AgentError, match="at most"):
        change(zone_name, many)
    # then the zone is unchanged
    assert agent_dns.zone_get(domain=zone_name)["rrsets"] == before


@pytest.mark.node
def test_cname_beside_other_data_is_refused(zone_name):
    make_zone(zone_name)
    cname = hwdns.make_rrset(
        zone=zone_name, name="www", rtype="CNAME", contents=["x.net."], ttl=300
    )
    with pytest.raises(AgentError, match="has a CNAME"):
        change(zone_name, cname)
    _, data, _ = hwdns.query(f"www.{zone_name}", "A", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == ["127.0.0.1"]


def test_semicolons_inside_quoted_txt_are_kept():
    stored = hwdns.validate_record(zone="example.com", rtype="TXT", content="v=DMARC1; p=none")
    assert stored == '"v=DMARC1; p=none"'
