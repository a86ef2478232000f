"""DNS zones on the node's real PowerDNS, checked by asking the nameserver with dnspython."""

from __future__ import annotations

import datetime as dt

import pytest

from provisioning.resources import dns as hwdns
from provisioning.resources.errors import ResourceRefused

from .conftest import DNS_PORT

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
    with pytest.raises(ResourceRefused):
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
    with pytest.raises(ResourceRefused):
        hwdns.owner_name(zone="example.com", name=name)


def test_serials_follow_the_date_and_always_increase():
    today = dt.date(2026, 11, 22)
    assert hwdns.next_serial(1, today) == 2026112201
    assert hwdns.next_serial(2026112201, today) == 2026112202
    assert hwdns.next_serial(2026112299, today) == 2026112300
    assert hwdns.next_serial(2030010101, today) == 2030010102


def test_cname_on_the_apex_is_refused():
    with pytest.raises(ResourceRefused, match="domain itself"):
        hwdns.make_rrset(zone="example.com", name="@", rtype="CNAME", contents=["x.net."], ttl=300)


def test_ttl_out_of_range_is_refused():
    with pytest.raises(ResourceRefused, match="TTL"):
        hwdns.make_rrset(zone="example.com", name="a", rtype="A", contents=["192.0.2.1"], ttl=5)


# --- the real PowerDNS --------------------------------------------------------------------


@pytest.mark.node
def test_created_zone_is_served_with_soa_ns_a_aaaa_mx_and_spf(pdns, zone_name):
    # given the records a new hosted domain starts with
    rrsets = initial(zone_name)

    # when the zone is created
    assert pdns.create_zone(zone_name, rrsets) is True

    # then the nameserver answers authoritatively with exactly those records
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT, expect=rrsets)
    assert check.ok, check.problems
    assert check.serial == 2026010101
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
def test_creating_a_zone_twice_leaves_one_zone(pdns, zone_name):
    # given an existing zone
    pdns.create_zone(zone_name, initial(zone_name))

    # when it is created again (a retried step)
    created = pdns.create_zone(zone_name, initial(zone_name))

    # then nothing new was created and each RRset is there once
    assert created is False
    rrsets = pdns.get_zone(zone_name)
    keys = [(r.name, r.rtype) for r in rrsets]
    assert len(keys) == len(set(keys))
    assert len(rrsets) == len(initial(zone_name))


@pytest.mark.node
def test_deleted_zone_is_no_longer_served_and_deleting_again_is_a_no_op(pdns, zone_name):
    # given a served zone
    pdns.create_zone(zone_name, initial(zone_name))

    # when it is deleted twice
    first, second = pdns.delete_zone(zone_name), pdns.delete_zone(zone_name)

    # then the nameserver refuses to answer for it
    assert (first, second) == (True, False)
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT)
    assert not check.ok
    assert any("REFUSED" in p for p in check.problems)
    assert pdns.get_zone(zone_name) is None


@pytest.mark.node
def test_replacing_an_rrset_is_served_with_a_new_serial(pdns, zone_name):
    # given a zone
    pdns.create_zone(zone_name, initial(zone_name))

    # when the customer points www elsewhere and adds a CAA record
    www = hwdns.make_rrset(zone=zone_name, name="www", rtype="A", contents=["192.0.2.7"], ttl=300)
    caa = hwdns.make_rrset(
        zone=zone_name, name="@", rtype="CAA", contents=['0 issue "letsencrypt.org"'], ttl=300
    )
    serial_1 = pdns.replace_rrset(zone_name, www)
    serial_2 = pdns.replace_rrset(zone_name, caa)

    # then the nameserver answers the new data, and the serial went up each time
    assert serial_2 > serial_1 > 2026010101
    _, data, aa = hwdns.query(f"www.{zone_name}", "A", nameserver="127.0.0.1", port=DNS_PORT)
    assert (data, aa) == (["192.0.2.7"], True)
    _, data, _ = hwdns.query(zone_name, "CAA", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == ['0 issue "letsencrypt.org"']
    check = hwdns.verify_zone(zone_name, nameserver="127.0.0.1", port=DNS_PORT)
    assert check.serial == serial_2

    # and deleting the CAA record removes it
    pdns.delete_rrset(zone_name, name="@", rtype="CAA")
    _, data, _ = hwdns.query(zone_name, "CAA", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == []


@pytest.mark.node
def test_a_change_over_the_record_limit_is_refused_and_nothing_changes(pdns, zone_name):
    # given a zone with its initial records
    rrsets = initial(zone_name)
    pdns.create_zone(zone_name, rrsets)
    count = sum(len(r.contents) for r in rrsets)

    # when a change would pass the limit
    extra = hwdns.make_rrset(
        zone=zone_name, name="many", rtype="A", contents=["192.0.2.1", "192.0.2.2"], ttl=300
    )
    with pytest.raises(ResourceRefused, match=f"at most {count + 1} records"):
        pdns.replace_rrset(zone_name, extra, limit=count + 1)

    # then the zone is unchanged
    assert sorted(pdns.get_zone(zone_name), key=str) == sorted(rrsets, key=str)


@pytest.mark.node
def test_cname_beside_other_data_is_refused(pdns, zone_name):
    # given a zone where www has an A record
    pdns.create_zone(zone_name, initial(zone_name))

    # when the customer adds a CNAME on www
    cname = hwdns.make_rrset(
        zone=zone_name, name="www", rtype="CNAME", contents=["x.net."], ttl=300
    )
    with pytest.raises(ResourceRefused, match="has a CNAME"):
        pdns.replace_rrset(zone_name, cname)

    # then www still answers its A record
    _, data, _ = hwdns.query(f"www.{zone_name}", "A", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == ["127.0.0.1"]


@pytest.mark.node
def test_wrong_api_key_is_a_permanent_error(powerdns_node, zone_name):
    # given a client with the wrong key
    bad = hwdns.PowerDNS(hwdns.HttpTransport(base_url="http://127.0.0.1:8081", api_key="nope"))

    # when it tries to create a zone, then the server refuses and retrying would not help
    with pytest.raises(hwdns.DnsApiError) as info:
        bad.create_zone(zone_name, initial(zone_name))
    assert info.value.permanent is True
    assert "nope" not in str(info.value)


def test_semicolons_inside_quoted_txt_are_kept():
    stored = hwdns.validate_record(zone="example.com", rtype="TXT", content="v=DMARC1; p=none")
    assert stored == '"v=DMARC1; p=none"'
