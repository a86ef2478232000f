"""DNS zones on a node's PowerDNS, through its HTTP API, and checks with dnspython.

- ``zone_rrsets()`` builds the zone a hosted domain starts with: SOA, NS, A/AAAA for the apex
  and ``www``, ``mail`` with MX, and an SPF record.
- ``validate_record()`` checks what a customer typed (A, AAAA, CNAME, MX, TXT, SRV, CAA) with
  dnspython and returns it in the presentation form PowerDNS stores; nothing unparsable is
  ever sent.
- Zones and RRsets change on the node through the node agent (``dns.zone_ensure``,
  ``dns.records``, ``dns.zone_remove``), which holds PowerDNS's API key; every change carries
  a new SOA serial, and the apex SOA and NS are never the customer's to change.
- ``verify_zone()`` asks the nameserver itself and returns what it answered, so "was DNS
  configured?" has a stored answer rather than a guess.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from provisioning.errors import ProvisioningRefused
from provisioning.resources.mail import dmarc_text, spf_text
from provisioning.validators import domain_to_ascii, validate_ip

EDITABLE_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA")
# Records a customer may have in one zone, the ones we create included. A zone is stored and
# served by every node that carries it; this keeps one customer from growing it without bound.
MAX_RECORDS_PER_ZONE = 200
MIN_TTL = 60
MAX_TTL = 86400
DEFAULT_TTL = 3600
SOA_TIMERS = "10800 3600 604800 3600"  # refresh retry expire negative-ttl

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_OWNER_LABEL = re.compile(r"\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


# --- names, serials, record data --------------------------------------------------------------


def fqdn(name: str) -> str:
    """``example.com`` -> ``example.com.`` (the form PowerDNS uses for names)."""
    return name if name.endswith(".") else name + "."


def owner_name(*, zone: str, name: str) -> str:
    """The absolute owner name for ``name`` typed relative to ``zone`` (``@`` is the apex).

    Accepts ``www``, ``_sip._tcp``, ``*``, ``@`` or a full name inside the zone.
    """
    zone = domain_to_ascii(zone)
    raw = name.strip().lower().rstrip(".")
    if raw in ("", "@"):
        return fqdn(zone)
    if raw == zone:
        return fqdn(zone)
    if raw.endswith("." + zone):
        raw = raw[: -len(zone) - 1]
    labels = raw.split(".")
    for i, label in enumerate(labels):
        if not _OWNER_LABEL.fullmatch(label) or (label == "*" and i != 0):
            raise ProvisioningRefused(
                f"{name!r} is not a valid record name in {zone}.", code="dns_name"
            )
    full = f"{raw}.{zone}"
    if len(full) > 253:
        raise ProvisioningRefused(f"{name!r} is too long for a record name.", code="dns_name")
    return fqdn(full)


def next_serial(current: int, today: dt.date) -> int:
    """The serial after ``current``, in the date form YYYYMMDDnn while that still increases."""
    dated = int(today.strftime("%Y%m%d")) * 100 + 1
    return dated if current < dated else current + 1


def txt_content(text: str) -> str:
    """A TXT value as a quoted string (split into 255-byte strings), from plain text."""
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    quoted = []
    for chunk in chunks:
        s = chunk.decode("utf-8", errors="strict").replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{s}"')
    return " ".join(quoted)


def validate_record(*, zone: str, rtype: str, content: str) -> str:
    """Parse ``content`` as ``rtype`` data with dnspython and return PowerDNS's form of it.

    Relative names in the data (an MX or CNAME target such as ``mail``) are made absolute in
    ``zone``. A TXT value that is not already quoted is taken as plain text and quoted.
    """
    zone = domain_to_ascii(zone)
    rtype = rtype.strip().upper()
    if rtype not in EDITABLE_TYPES:
        raise ProvisioningRefused(
            f"Record type {rtype!r} cannot be edited here; use one of {', '.join(EDITABLE_TYPES)}.",
            code="dns_type",
        )
    text = content.strip()
    if not text or len(text) > 4000 or any(c in text for c in "\r\n\0"):
        raise ProvisioningRefused(f"Enter a single line of {rtype} data.", code="dns_data")
    if rtype == "TXT" and not text.startswith('"'):
        text = txt_content(text)
    # The zone-file parser reads ";" as a comment and parentheses as line continuation: data
    # after them would be silently dropped, so they are only accepted inside quoted strings.
    if any(c in _QUOTED.sub("", text) for c in ";()"):
        raise ProvisioningRefused(f"{content!r} is not valid {rtype} data.", code="dns_data")
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rtype),
            text,
            origin=dns.name.from_text(fqdn(zone)),
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise ProvisioningRefused(
            f"{content!r} is not valid {rtype} data ({exc}).", code="dns_data"
        ) from None
    return str(rdata.to_text(relativize=False))


@dataclass(frozen=True)
class RRset:
    """All records of one name and type, as PowerDNS stores them."""

    name: str  # absolute, with the trailing dot
    rtype: str
    ttl: int
    contents: tuple[str, ...]

    def as_api(self, changetype: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "type": self.rtype,
            "ttl": self.ttl,
            "records": [{"content": c, "disabled": False} for c in self.contents],
        }
        if changetype:
            body["changetype"] = changetype
        return body


def make_rrset(*, zone: str, name: str, rtype: str, contents: list[str], ttl: int) -> RRset:
    """A validated RRset a customer asked for: name, type, each value, TTL."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ProvisioningRefused(
            f"The TTL must be between {MIN_TTL} and {MAX_TTL} seconds.", code="dns_ttl"
        )
    owner = owner_name(zone=zone, name=name)
    rtype = rtype.strip().upper()
    values = tuple(
        dict.fromkeys(validate_record(zone=zone, rtype=rtype, content=c) for c in contents)
    )
    if not values:
        raise ProvisioningRefused("Enter at least one value.", code="dns_data")
    if rtype == "CNAME":
        if owner == fqdn(domain_to_ascii(zone)):
            raise ProvisioningRefused(
                "A CNAME cannot be set on the domain itself (it would hide its SOA and NS).",
                code="dns_cname_apex",
            )
        if len(values) > 1:
            raise ProvisioningRefused("A name can have only one CNAME.", code="dns_cname")
    return RRset(name=owner, rtype=rtype, ttl=ttl, contents=values)


def deletion(*, zone: str, name: str, rtype: str) -> tuple[str, str]:
    """A customer's request to delete the RRset (``name``, ``rtype``), as (owner, type).

    Only the types a customer may edit can be deleted: the zone's SOA and NS (which keep the
    domain resolving through our nameservers) are the platform's, never the customer's.
    """
    owner = owner_name(zone=zone, name=name)
    rtype = rtype.strip().upper()
    if rtype not in EDITABLE_TYPES:
        what = "The domain's own" if owner == fqdn(domain_to_ascii(zone)) else "A"
        raise ProvisioningRefused(
            f"{what} {rtype} record cannot be deleted or changed here; "
            f"only {', '.join(EDITABLE_TYPES)} records can.",
            code="dns_type",
        )
    return owner, rtype


def soa_content(*, primary_ns: str, hostmaster: str, serial: int) -> str:
    return f"{fqdn(primary_ns)} {fqdn(hostmaster)} {serial} {SOA_TIMERS}"


def zone_rrsets(
    *,
    domain: str,
    ipv4: str,
    ipv6: str | None = None,
    nameservers: list[str],
    serial: int,
    ttl: int = DEFAULT_TTL,
    mail_from: list[str] | None = None,
    dmarc_policy: str = "none",
) -> list[RRset]:
    """The records a hosted domain starts with.

    SOA and NS from our nameservers; A (and AAAA) for the apex, ``www`` and ``mail``; MX to
    ``mail.<domain>``; SPF allowing the domain's MX and the addresses its mail leaves from
    (``mail_from``, by default the domain's own addresses) and nothing else; DMARC with
    ``dmarc_policy`` and aggregate reports to the domain's postmaster. The DKIM key is added
    once the node has made it.
    """
    zone = domain_to_ascii(domain)
    ipv4 = validate_ip(ipv4, version=4)
    ipv6 = validate_ip(ipv6, version=6) if ipv6 else None
    ns = [domain_to_ascii(n) for n in nameservers]
    senders = [validate_ip(a) for a in mail_from] if mail_from else [ipv4, *filter(None, [ipv6])]
    if not ns:
        raise ProvisioningRefused("A zone needs at least one nameserver.", code="dns_ns")
    apex = fqdn(zone)
    rrsets = [
        RRset(
            apex,
            "SOA",
            ttl,
            (soa_content(primary_ns=ns[0], hostmaster=f"hostmaster.{zone}", serial=serial),),
        ),
        RRset(apex, "NS", ttl, tuple(fqdn(n) for n in ns)),
        RRset(apex, "MX", ttl, (f"10 mail.{apex}",)),
        RRset(apex, "TXT", ttl, (txt_content(spf_text(senders)),)),
        RRset(
            f"_dmarc.{apex}",
            "TXT",
            ttl,
            (txt_content(dmarc_text(domain=zone, policy=dmarc_policy)),),
        ),
    ]
    for host in (apex, f"www.{apex}", f"mail.{apex}"):
        rrsets.append(RRset(host, "A", ttl, (ipv4,)))
        if ipv6:
            rrsets.append(RRset(host, "AAAA", ttl, (ipv6,)))
    return rrsets


def check_rrsets(rrsets: list[RRset], *, limit: int = MAX_RECORDS_PER_ZONE) -> None:
    """Refuse a zone content that breaks a rule: too many records, CNAME beside other data."""
    count = sum(len(r.contents) for r in rrsets)
    if count > limit:
        raise ProvisioningRefused(
            f"A zone can have at most {limit} records; this change would make {count}.",
            code="dns_limit",
        )
    types_by_name: dict[str, set[str]] = {}
    for r in rrsets:
        types_by_name.setdefault(r.name, set()).add(r.rtype)
    for name, types in types_by_name.items():
        if "CNAME" in types and len(types) > 1:
            raise ProvisioningRefused(
                f"{name} has a CNAME, so it cannot have other records "
                f"({', '.join(sorted(types - {'CNAME'}))}).",
                code="dns_cname",
            )


# --- asking the nameserver ------------------------------------------------------------------


@dataclass
class ZoneCheck:
    """What the nameserver answered for a zone, and how it compares with what we expect."""

    zone: str
    nameserver: str
    answers: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    serial: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the check, for a step's stored result."""
        return {
            "zone": self.zone,
            "nameserver": self.nameserver,
            "serial": self.serial,
            "answers": self.answers,
            "problems": self.problems,
            "ok": self.ok,
        }


def query(
    name: str, rtype: str, *, nameserver: str, port: int = 53, timeout: float = 3.0
) -> tuple[str, list[str], bool]:
    """One question to one server: (rcode text, answer data, authoritative flag)."""
    request = dns.message.make_query(fqdn(name), rtype)
    request.flags &= ~dns.flags.RD
    response = dns.query.udp(request, nameserver, port=port, timeout=timeout)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(request, nameserver, port=port, timeout=timeout)
    data = []
    wanted = dns.rdatatype.from_text(rtype)
    for rrset in response.answer:
        if rrset.rdtype == wanted:
            data.extend(sorted(r.to_text() for r in rrset))
    return dns.rcode.to_text(response.rcode()), data, bool(response.flags & dns.flags.AA)


def verify_zone(
    zone: str,
    *,
    nameserver: str,
    port: int = 53,
    expect: list[RRset] | None = None,
    timeout: float = 3.0,
) -> ZoneCheck:
    """Ask ``nameserver`` for the zone's SOA, NS, A/AAAA, MX and TXT and record the answers.

    With ``expect`` (usually what ``zone_rrsets`` built), each expected RRset must be
    answered authoritatively with the same data, and any difference becomes a problem.
    """
    zone = domain_to_ascii(zone)
    check = ZoneCheck(zone=zone, nameserver=f"{nameserver}:{port}")
    questions = [(fqdn(zone), t) for t in ("SOA", "NS", "A", "AAAA", "MX", "TXT")]
    questions.append((f"www.{fqdn(zone)}", "A"))
    for r in expect or []:
        if (r.name, r.rtype) not in questions:
            questions.append((r.name, r.rtype))
    for name, rtype in questions:
        try:
            rcode, data, authoritative = query(
                name, rtype, nameserver=nameserver, port=port, timeout=timeout
            )
        except (dns.exception.DNSException, OSError) as exc:
            check.problems.append(f"{name} {rtype}: no answer from {nameserver}:{port} ({exc})")
            continue
        check.answers[f"{name} {rtype}"] = data
        if rcode != "NOERROR" or not authoritative:
            check.problems.append(
                f"{name} {rtype}: {rcode}{'' if authoritative else ', not authoritative'}"
            )
        if rtype == "SOA" and data:
            check.serial = int(data[0].split()[2])
    for r in expect or []:
        if r.rtype == "SOA":
            continue  # the serial moves with every change
        got = check.answers.get(f"{r.name} {r.rtype}", [])
        want = sorted(_canonical(r.rtype, c, zone) for c in r.contents)
        if sorted(_canonical(r.rtype, c, zone) for c in got) != want:
            check.problems.append(
                f"{r.name} {r.rtype}: answered {got}, expected {list(r.contents)}"
            )
    return check


def _canonical(rtype: str, content: str, zone: str) -> str:
    try:
        return validate_record(zone=zone, rtype=rtype, content=content)
    except ProvisioningRefused:
        return content
