"""DNS zones on a node's PowerDNS, through its HTTP API, and checks with dnspython.

- ``zone_rrsets()`` builds the zone a hosted domain starts with: SOA, NS, A/AAAA for the apex
  and ``www``, ``mail`` with MX, and an SPF record.
- ``validate_record()`` checks what a customer typed (A, AAAA, CNAME, MX, TXT, SRV, CAA) with
  dnspython and returns it in the presentation form PowerDNS stores; nothing unparsable is
  ever sent.
- ``PowerDNS`` creates and deletes zones and replaces RRsets. Every change also rewrites the
  SOA with the next serial in the same PATCH, so secondaries and caches see one new serial per
  change. Calls are idempotent: creating an existing zone brings it to the given RRsets,
  deleting a missing zone is a no-op.
- ``verify_zone()`` asks the nameserver itself and returns what it answered, so "was DNS
  configured?" has a stored answer rather than a guess.

The API listens on the node's loopback; ``HttpTransport`` reaches it directly (the test node,
or a forwarded port). Any object with the same ``request`` method can carry it another way.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from provisioning.resources.errors import ResourceError, ResourceRefused
from provisioning.resources.mail import dmarc_text, spf_text
from provisioning.resources.validation import validate_domain, validate_ip

EDITABLE_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA")
# Records a customer may have in one zone, the ones we create included. A zone is stored and
# served by every node that carries it; this keeps one customer from growing it without bound.
MAX_RECORDS_PER_ZONE = 200
MIN_TTL = 60
MAX_TTL = 86400
DEFAULT_TTL = 3600
SOA_TIMERS = "10800 3600 604800 3600"  # refresh retry expire negative-ttl

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_OWNER_LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")


class DnsApiError(ResourceError):
    """PowerDNS refused a request or could not be reached."""


# --- names, serials, record data --------------------------------------------------------------


def fqdn(name: str) -> str:
    """``example.com`` -> ``example.com.`` (the form PowerDNS uses for names)."""
    return name if name.endswith(".") else name + "."


def owner_name(*, zone: str, name: str) -> str:
    """The absolute owner name for ``name`` typed relative to ``zone`` (``@`` is the apex).

    Accepts ``www``, ``_sip._tcp``, ``*``, ``@`` or a full name inside the zone.
    """
    zone = validate_domain(zone)
    raw = name.strip().lower().rstrip(".")
    if raw in ("", "@"):
        return fqdn(zone)
    if raw == zone:
        return fqdn(zone)
    if raw.endswith("." + zone):
        raw = raw[: -len(zone) - 1]
    labels = raw.split(".")
    for i, label in enumerate(labels):
        if not _OWNER_LABEL.match(label) or (label == "*" and i != 0):
            raise ResourceRefused(
                f"{name!r} is not a valid record name in {zone}.", code="dns_name"
            )
    full = f"{raw}.{zone}"
    if len(full) > 253:
        raise ResourceRefused(f"{name!r} is too long for a record name.", code="dns_name")
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
    zone = validate_domain(zone)
    rtype = rtype.strip().upper()
    if rtype not in EDITABLE_TYPES:
        raise ResourceRefused(
            f"Record type {rtype!r} cannot be edited here; use one of {', '.join(EDITABLE_TYPES)}.",
            code="dns_type",
        )
    text = content.strip()
    if not text or len(text) > 4000 or any(c in text for c in "\r\n\0"):
        raise ResourceRefused(f"Enter a single line of {rtype} data.", code="dns_data")
    if rtype == "TXT" and not text.startswith('"'):
        text = txt_content(text)
    # The zone-file parser reads ";" as a comment and parentheses as line continuation: data
    # after them would be silently dropped, so they are only accepted inside quoted strings.
    if any(c in _QUOTED.sub("", text) for c in ";()"):
        raise ResourceRefused(f"{content!r} is not valid {rtype} data.", code="dns_data")
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rtype),
            text,
            origin=dns.name.from_text(fqdn(zone)),
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise ResourceRefused(
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
        raise ResourceRefused(
            f"The TTL must be between {MIN_TTL} and {MAX_TTL} seconds.", code="dns_ttl"
        )
    owner = owner_name(zone=zone, name=name)
    rtype = rtype.strip().upper()
    values = tuple(
        dict.fromkeys(validate_record(zone=zone, rtype=rtype, content=c) for c in contents)
    )
    if not values:
        raise ResourceRefused("Enter at least one value.", code="dns_data")
    if rtype == "CNAME":
        if owner == fqdn(validate_domain(zone)):
            raise ResourceRefused(
                "A CNAME cannot be set on the domain itself (it would hide its SOA and NS).",
                code="dns_cname_apex",
            )
        if len(values) > 1:
            raise ResourceRefused("A name can have only one CNAME.", code="dns_cname")
    return RRset(name=owner, rtype=rtype, ttl=ttl, contents=values)


def deletion(*, zone: str, name: str, rtype: str) -> tuple[str, str]:
    """A customer's request to delete the RRset (``name``, ``rtype``), as (owner, type).

    Only the types a customer may edit can be deleted: the zone's SOA and NS (which keep the
    domain resolving through our nameservers) are the platform's, never the customer's.
    """
    owner = owner_name(zone=zone, name=name)
    rtype = rtype.strip().upper()
    if rtype not in EDITABLE_TYPES:
        what = "The domain's own" if owner == fqdn(validate_domain(zone)) else "A"
        raise ResourceRefused(
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
    zone = validate_domain(domain)
    ipv4 = validate_ip(ipv4, version=4)
    ipv6 = validate_ip(ipv6, version=6) if ipv6 else None
    ns = [validate_domain(n) for n in nameservers]
    senders = [validate_ip(a) for a in mail_from] if mail_from else [ipv4, *filter(None, [ipv6])]
    if not ns:
        raise ResourceRefused("A zone needs at least one nameserver.", code="dns_ns")
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
        raise ResourceRefused(
            f"A zone can have at most {limit} records; this change would make {count}.",
            code="dns_limit",
        )
    types_by_name: dict[str, set[str]] = {}
    for r in rrsets:
        types_by_name.setdefault(r.name, set()).add(r.rtype)
    for name, types in types_by_name.items():
        if "CNAME" in types and len(types) > 1:
            raise ResourceRefused(
                f"{name} has a CNAME, so it cannot have other records "
                f"({', '.join(sorted(types - {'CNAME'}))}).",
                code="dns_cname",
            )


# --- the HTTP API ---------------------------------------------------------------------------


class Transport(Protocol):
    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]: ...


class HttpTransport:
    """PowerDNS's HTTP API reached directly (loopback on the node, or a forwarded port)."""

    def __init__(self, *, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (the URL is our own node's API)
            self.base_url + path,
            data=data,
            method=method,
            headers={"X-API-Key": self._api_key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise DnsApiError(f"The DNS server's API did not answer: {exc}.") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, payload


def _api_error(status: int, payload: Any, doing: str) -> DnsApiError:
    detail = payload.get("error") if isinstance(payload, dict) else payload
    # 4xx other than rate limiting: the request itself is wrong, repeating it will not help.
    permanent = 400 <= status < 500 and status != 429
    return DnsApiError(
        f"DNS server refused to {doing}: {detail} (HTTP {status}).", permanent=permanent
    )


class PowerDNS:
    """Zones and RRsets on one PowerDNS server."""

    def __init__(self, transport: Transport, *, server_id: str = "localhost") -> None:
        self.transport = transport
        self.server_id = server_id

    def _zone_path(self, zone: str) -> str:
        return f"/api/v1/servers/{self.server_id}/zones/{fqdn(validate_domain(zone))}"

    def get_zone(self, zone: str) -> list[RRset] | None:
        """The zone's RRsets, or None when the server does not have the zone."""
        status, payload = self.transport.request("GET", self._zone_path(zone), None)
        if status in (404, 422):
            return None
        if status != 200:
            raise _api_error(status, payload, f"read {zone}")
        return [
            RRset(
                name=r["name"],
                rtype=r["type"],
                ttl=int(r["ttl"]),
                contents=tuple(x["content"] for x in r["records"]),
            )
            for r in payload["rrsets"]
        ]

    def create_zone(self, zone: str, rrsets: list[RRset]) -> bool:
        """Create ``zone`` with ``rrsets``; returns False when it already existed.

        An existing zone is brought to the given RRsets (replacing those names and types),
        so running this twice leaves one zone with the same content.
        """
        zone = validate_domain(zone)
        check_rrsets(rrsets, limit=MAX_RECORDS_PER_ZONE + len(rrsets))
        body = {
            "name": fqdn(zone),
            "kind": "Native",
            "nameservers": [],
            "soa_edit_api": "",
            "rrsets": [r.as_api() for r in rrsets],
        }
        status, payload = self.transport.request(
            "POST", f"/api/v1/servers/{self.server_id}/zones", body
        )
        if status == 201:
            return True
        if status == 409:  # "Conflict": the zone exists already
            patch = {"rrsets": [r.as_api("REPLACE") for r in rrsets]}
            status, payload = self.transport.request("PATCH", self._zone_path(zone), patch)
            if status != 204:
                raise _api_error(status, payload, f"update {zone}")
            return False
        raise _api_error(status, payload, f"create {zone}")

    def delete_zone(self, zone: str) -> bool:
        """Delete ``zone``; returns False when there was nothing to delete."""
        status, payload = self.transport.request("DELETE", self._zone_path(zone), None)
        if status == 204:
            return True
        if status in (404, 422):
            return False
        raise _api_error(status, payload, f"delete {zone}")

    def _soa_bump(self, current: list[RRset], today: dt.date) -> RRset:
        soa = next(r for r in current if r.rtype == "SOA")
        parts = soa.contents[0].split()
        parts[2] = str(next_serial(int(parts[2]), today))
        return RRset(soa.name, "SOA", soa.ttl, (" ".join(parts),))

    def change_rrsets(
        self,
        zone: str,
        *,
        replace: Sequence[RRset] = (),
        delete: Sequence[tuple[str, str]] = (),
        limit: int = MAX_RECORDS_PER_ZONE,
        today: dt.date | None = None,
    ) -> int:
        """Replace and delete RRsets in one atomic change with a new SOA serial.

        ``delete`` holds (absolute name, type) pairs. The result is checked against the zone's
        rules (record count, CNAME exclusivity) before anything is sent. Returns the serial.
        """
        zone = validate_domain(zone)
        current = self.get_zone(zone)
        if current is None:
            raise DnsApiError(f"The zone {zone} does not exist on the DNS server.", permanent=True)
        for r in replace:
            if r.rtype in ("SOA",) or (r.rtype == "NS" and r.name == fqdn(zone)):
                raise ResourceRefused(
                    f"{r.rtype} records of {zone} are managed for you.", code="dns_type"
                )
            if not (r.name == fqdn(zone) or r.name.endswith("." + fqdn(zone))):
                raise ResourceRefused(f"{r.name} is not inside {zone}.", code="dns_name")
        gone = {(n, t.upper()) for n, t in delete} | {(r.name, r.rtype) for r in replace}
        after = [r for r in current if (r.name, r.rtype) not in gone] + list(replace)
        check_rrsets(after, limit=limit)
        soa = self._soa_bump(current, today or dt.datetime.now(dt.UTC).date())
        rrsets = [r.as_api("REPLACE") for r in replace]
        rrsets += [
            {"name": n, "type": t.upper(), "changetype": "DELETE"}
            for n, t in delete
            if (n, t.upper()) not in {(r.name, r.rtype) for r in replace}
        ]
        rrsets.append(soa.as_api("REPLACE"))
        status, payload = self.transport.request("PATCH", self._zone_path(zone), {"rrsets": rrsets})
        if status != 204:
            raise _api_error(status, payload, f"change {zone}")
        return int(soa.contents[0].split()[2])

    def replace_rrset(self, zone: str, rrset: RRset, *, limit: int = MAX_RECORDS_PER_ZONE) -> int:
        """Set all records of one name and type; returns the zone's new serial."""
        return self.change_rrsets(zone, replace=[rrset], limit=limit)

    def delete_rrset(self, zone: str, *, name: str, rtype: str) -> int:
        """Remove all records of one name and type; returns the zone's new serial."""
        return self.change_rrsets(zone, delete=[(owner_name(zone=zone, name=name), rtype)])


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
    zone = validate_domain(zone)
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
    except ResourceRefused:
        return content
