"""DNS zones and records in the node's PowerDNS, through its HTTP API on loopback.

The API key stays in ``/etc/hostwright/pdns-api-key`` (root only) and never travels. A
hosted zone starts with SOA, NS, A (and AAAA) for the apex, ``www`` and ``mail``, MX and SPF
(``dns.zone_ensure``). Customers change records with ``dns.records``: the apex SOA and NS
are never replaced or removed by it, every change carries a new SOA serial in the same PATCH,
and the answer holds the RRsets as they were before, so an undo puts back exactly those.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hwagent import validate
from hwagent.errors import AgentError
from hwagent.registry import action

API = "http://127.0.0.1:8081/api/v1/servers/localhost"
API_KEY_FILE = "/etc/hostwright/pdns-api-key"
PDNS_CONF = "/etc/powerdns/pdns.d/hostwright.conf"
EDITABLE_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA")
MAX_RECORDS_PER_ZONE = 200
MIN_TTL, MAX_TTL, DEFAULT_TTL = 60, 86400, 3600
SOA_TIMERS = "10800 3600 604800 3600"
_OWNER_LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+$|^\.$")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


# --- the API ---------------------------------------------------------------------------------


def _request(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    try:
        key = Path(API_KEY_FILE).read_text().strip()
    except OSError:
        raise AgentError("failed", "the DNS server is not set up on this node") from None
    req = urllib.request.Request(  # noqa: S310 (the node's own loopback API)
        API + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:  # noqa: S310
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise AgentError(
            "busy", "the DNS server is not answering", permanent=False, detail=str(exc)
        ) from None
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, payload


def _api_error(status: int, payload: Any, doing: str) -> AgentError:
    detail = payload.get("error") if isinstance(payload, dict) else payload
    permanent = 400 <= status < 500 and status != 429
    code = "invalid" if status == 422 else ("failed" if permanent else "busy")
    return AgentError(
        code,
        f"the DNS server refused to {doing}" + (f": {detail}" if permanent and detail else ""),
        permanent=permanent,
        detail=f"HTTP {status}: {detail}"[:500],
    )


def _zone_path(zone: str) -> str:
    return f"/zones/{_fqdn(zone)}"


def _get_zone(zone: str) -> list[dict[str, Any]] | None:
    status, payload = _request("GET", _zone_path(zone))
    if status in (404, 422):
        return None
    if status != 200:
        raise _api_error(status, payload, f"read {zone}")
    return [
        {
            "name": r["name"],
            "type": r["type"],
            "ttl": int(r["ttl"]),
            "contents": [x["content"] for x in r["records"]],
        }
        for r in payload["rrsets"]
    ]


def _rrset_api(r: dict[str, Any], changetype: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": r["name"],
        "type": r["type"],
        "ttl": r["ttl"],
        "records": [{"content": c, "disabled": False} for c in r["contents"]],
    }
    if changetype:
        body["changetype"] = changetype
    return body


def next_serial(current: int, today: dt.date) -> int:
    dated = int(today.strftime("%Y%m%d")) * 100 + 1
    return dated if current < dated else current + 1


# --- validation ------------------------------------------------------------------------------


def _ttl(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_TTL <= value <= MAX_TTL:
        raise AgentError("invalid", f"the TTL must be between {MIN_TTL} and {MAX_TTL} seconds")
    return value


def owner(zone: str, name: object) -> str:
    """An absolute owner name inside ``zone`` (``name`` is absolute or relative, ``@`` apex)."""
    if not isinstance(name, str) or len(name) > 260:
        raise AgentError("invalid", "a record name must be text")
    absolute = name.strip().endswith(".")
    raw = name.strip().lower().rstrip(".")
    if raw in ("", "@", zone):
        return _fqdn(zone)
    if raw.endswith("." + zone):
        raw = raw[: -len(zone) - 1]
    elif absolute:
        raise AgentError("invalid", f"{name[:80]!r} is not inside {zone}")
    labels = raw.split(".")
    for i, label in enumerate(labels):
        if not _OWNER_LABEL.match(label) or (label == "*" and i != 0):
            raise AgentError("invalid", f"{name[:80]!r} is not a valid record name in {zone}")
    full = f"{raw}.{zone}"
    if len(full) > 253:
        raise AgentError("invalid", f"{name[:80]!r} is too long for a record name")
    return _fqdn(full)


def _hostname(value: str, what: str) -> str:
    if not _HOSTNAME.match(value) or len(value) > 254:
        raise AgentError("invalid", f"{what} must be an absolute host name ending in a dot")
    return value


def check_content(rtype: str, content: object) -> str:
    """A record's data in the form PowerDNS stores (the panel sends it that way), checked by
    type; PowerDNS parses it again and refuses what it cannot read."""
    if not isinstance(content, str) or not content or len(content) > 4000:
        raise AgentError("invalid", f"enter {rtype} data as one line of text")
    if any(c in content for c in "\r\n\0"):
        raise AgentError("invalid", f"{rtype} data must be one line")
    parts = content.split()
    try:
        if rtype == "A":
            return str(ipaddress.IPv4Address(content))
        if rtype == "AAAA":
            return str(ipaddress.IPv6Address(content))
        if rtype == "CNAME":
            return _hostname(content, "a CNAME target")
        if rtype == "MX":
            if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > 65535:
                raise ValueError
            return f"{int(parts[0])} {_hostname(parts[1], 'a mail server')}"
        if rtype == "SRV":
            if len(parts) != 4 or not all(p.isdigit() and int(p) <= 65535 for p in parts[:3]):
                raise ValueError
            return " ".join([*(str(int(p)) for p in parts[:3]), _hostname(parts[3], "a target")])
        if rtype == "TXT":
            if _QUOTED.sub("", content).strip():
                raise ValueError
            return content
        if rtype == "CAA":
            if len(parts) < 3 or not parts[0].isdigit() or int(parts[0]) > 255:
                raise ValueError
            if not re.fullmatch(r"[a-z0-9]{1,15}", parts[1]):
                raise ValueError
            if _QUOTED.sub("", content.split(None, 2)[2]).strip():
                raise ValueError
            return content
    except (ValueError, ipaddress.AddressValueError):
        pass
    raise AgentError("invalid", f"{content[:80]!r} is not valid {rtype} data")


def rrset(zone: str, value: object) -> dict[str, Any]:
    """One RRset a customer may set: an editable type, a name inside the zone, valid data."""
    if not isinstance(value, dict) or set(value) - {"name", "type", "ttl", "contents"}:
        raise AgentError("invalid", "a record set is {name, type, ttl, contents}")
    rtype = value.get("type")
    if not isinstance(rtype, str) or rtype.upper() not in EDITABLE_TYPES:
        raise AgentError(
            "invalid",
            f"record type {str(rtype)[:10]!r} cannot be changed here; "
            f"use one of {', '.join(EDITABLE_TYPES)}",
        )
    rtype = rtype.upper()
    name = owner(zone, value.get("name"))
    contents = value.get("contents")
    if not isinstance(contents, list) or not contents or len(contents) > MAX_RECORDS_PER_ZONE:
        raise AgentError("invalid", "a record set needs at least one value")
    checked = list(dict.fromkeys(check_content(rtype, c) for c in contents))
    if rtype == "CNAME":
        if name == _fqdn(zone):
            raise AgentError("invalid", "a CNAME cannot be set on the domain itself")
        if len(checked) > 1:
            raise AgentError("invalid", "a name can have only one CNAME")
    return {
        "name": name,
        "type": rtype,
        "ttl": _ttl(value.get("ttl", DEFAULT_TTL)),
        "contents": checked,
    }


def _deletion(zone: str, value: object) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise AgentError("invalid", "a deletion is [name, type]")
    name, rtype = owner(zone, value[0]), value[1].upper()
    if rtype not in EDITABLE_TYPES:
        raise AgentError("invalid", f"{rtype[:10]} records of {zone} are managed for you")
    return name, rtype


def _check_zone(after: list[dict[str, Any]]) -> None:
    count = sum(len(r["contents"]) for r in after)
    if count > MAX_RECORDS_PER_ZONE:
        raise AgentError(
            "limit",
            f"a zone can have at most {MAX_RECORDS_PER_ZONE} records; this change would make "
            f"{count}",
        )
    types: dict[str, set[str]] = {}
    for r in after:
        types.setdefault(r["name"], set()).add(r["type"])
    for name, kinds in types.items():
        if "CNAME" in kinds and len(kinds) > 1:
            raise AgentError(
                "invalid",
                f"{name} has a CNAME, so it cannot have other records "
                f"({', '.join(sorted(kinds - {'CNAME'}))})",
            )


# --- actions -------------------------------------------------------------------------------


def standard_zone(
    *, zone: str, ipv4: str, ipv6: str | None, nameservers: list[str], serial: int, ttl: int
) -> list[dict[str, Any]]:
    apex = _fqdn(zone)
    soa = f"{_fqdn(nameservers[0])} hostmaster.{apex} {serial} {SOA_TIMERS}"
    rrsets = [
        {"name": apex, "type": "SOA", "ttl": ttl, "contents": [soa]},
        {"name": apex, "type": "NS", "ttl": ttl, "contents": [_fqdn(n) for n in nameservers]},
        {"name": apex, "type": "MX", "ttl": ttl, "contents": [f"10 mail.{apex}"]},
        {"name": apex, "type": "TXT", "ttl": ttl, "contents": ['"v=spf1 a mx ~all"']},
    ]
    for host in (apex, f"www.{apex}", f"mail.{apex}"):
        rrsets.append({"name": host, "type": "A", "ttl": ttl, "contents": [ipv4]})
        if ipv6:
            rrsets.append({"name": host, "type": "AAAA", "ttl": ttl, "contents": [ipv6]})
    return rrsets


def _with(rrsets: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    replaced = {(r["name"], r["type"]) for r in extra}
    after = [r for r in rrsets if (r["name"], r["type"]) not in replaced] + extra
    _check_zone(after)
    return after


@action("dns.zone_ensure")
def zone_ensure(
    *,
    domain: str,
    ipv4: str,
    nameservers: list[str],
    ipv6: str | None = None,
    ttl: int = DEFAULT_TTL,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The domain's zone with its starting records.

    SOA and NS from ``nameservers``, A (and AAAA) for the apex, ``www`` and ``mail``, MX to
    ``mail``, an SPF record; ``records`` (editable types only, checked like a customer's:
    the mail policy's SPF and DMARC, say) replace those of the same name and type or add to
    them. Asks PowerDNS first: ``created`` is true only when the zone did not exist (an undo
    removes only a zone it created). An existing zone gets the starting RRsets again (those
    names and types only; records the customer added elsewhere stay).
    """
    zone = validate.domain(domain)
    extra = [rrset(zone, r) for r in (records or [])[:MAX_RECORDS_PER_ZONE]]
    try:
        v4 = str(ipaddress.IPv4Address(ipv4))
        v6 = str(ipaddress.IPv6Address(ipv6)) if ipv6 else None
    except ValueError:
        raise AgentError("invalid", "the zone's addresses are not valid IP addresses") from None
    if not nameservers or len(nameservers) > 13:
        raise AgentError("invalid", "a zone needs 1 to 13 nameservers")
    ns = [validate.domain(n) for n in nameservers]
    ttl = _ttl(ttl)
    today = dt.datetime.now(dt.UTC).date()
    current = _get_zone(zone)
    if current is None:
        rrsets = _with(
            standard_zone(
                zone=zone, ipv4=v4, ipv6=v6, nameservers=ns, serial=next_serial(0, today), ttl=ttl
            ),
            extra,
        )
        body = {
            "name": _fqdn(zone),
            "kind": "Native",
            "nameservers": [],
            "soa_edit_api": "",
            "rrsets": [_rrset_api(r) for r in rrsets],
        }
        status, payload = _request("POST", "/zones", body)
        if status == 201:
            return {"changed": True, "created": True, "zone": zone}
        if status != 409:
            raise _api_error(status, payload, f"create {zone}")
        current = _get_zone(zone) or []
    serial = max(
        (int(r["contents"][0].split()[2]) for r in current if r["type"] == "SOA"), default=0
    )
    rrsets = _with(
        standard_zone(
            zone=zone, ipv4=v4, ipv6=v6, nameservers=ns, serial=next_serial(serial, today), ttl=ttl
        ),
        extra,
    )
    status, payload = _request(
        "PATCH", _zone_path(zone), {"rrsets": [_rrset_api(r, "REPLACE") for r in rrsets]}
    )
    if status != 204:
        raise _api_error(status, payload, f"update {zone}")
    return {"changed": True, "created": False, "zone": zone}


@action("dns.zone_remove")
def zone_remove(*, domain: str) -> dict[str, Any]:
    """Delete the zone with all its records (a no-op when it is gone)."""
    zone = validate.domain(domain)
    status, payload = _request("DELETE", _zone_path(zone))
    if status == 204:
        return {"changed": True, "removed": True}
    if status in (404, 422):
        return {"changed": False, "removed": False}
    raise _api_error(status, payload, f"delete {zone}")


@action("dns.zone_get")
def zone_get(*, domain: str) -> dict[str, Any]:
    """The zone's RRsets, or ``exists: false``."""
    zone = validate.domain(domain)
    rrsets = _get_zone(zone)
    return {"changed": False, "exists": rrsets is not None, "rrsets": rrsets or []}


@action("dns.records")
def records(
    *, domain: str, replace: list[dict[str, Any]], delete: list[list[str]]
) -> dict[str, Any]:
    """Replace and delete RRsets of the zone in one atomic change with a new SOA serial.

    Only the editable types (A, AAAA, CNAME, MX, TXT, SRV, CAA) may be named: the apex SOA
    and NS are never replaced nor removed here. The zone's rules (record count, a CNAME
    alone at its name) are checked against the result before anything is sent. Answers the
    new serial and ``previous``: the touched RRsets as they were, for an undo.
    """
    zone = validate.domain(domain)
    if len(replace) + len(delete) > MAX_RECORDS_PER_ZONE:
        raise AgentError("invalid", "too many changes at once")
    new = [rrset(zone, r) for r in replace]
    gone = [_deletion(zone, d) for d in delete]
    current = _get_zone(zone)
    if current is None:
        raise AgentError("not_found", f"the zone {zone} does not exist on this node")
    touched = {(r["name"], r["type"]) for r in new} | set(gone)
    previous = [r for r in current if (r["name"], r["type"]) in touched]
    after = [r for r in current if (r["name"], r["type"]) not in touched] + new
    _check_zone(after)
    soa = next(r for r in current if r["type"] == "SOA")
    fields = soa["contents"][0].split()
    fields[2] = str(next_serial(int(fields[2]), dt.datetime.now(dt.UTC).date()))
    patch = [_rrset_api(r, "REPLACE") for r in new]
    replaced = {(r["name"], r["type"]) for r in new}
    patch += [
        {"name": n, "type": t, "changetype": "DELETE"} for n, t in gone if (n, t) not in replaced
    ]
    patch.append(_rrset_api({**soa, "contents": [" ".join(fields)]}, "REPLACE"))
    status, payload = _request("PATCH", _zone_path(zone), {"rrsets": patch})
    if status != 204:
        raise _api_error(status, payload, f"change {zone}")
    return {"changed": True, "serial": int(fields[2]), "previous": previous}


@action("dns.server")
def server() -> dict[str, Any]:
    """Where the node's nameserver answers (its port), for checks from the panel."""
    port = 53
    try:
        for line in Path(PDNS_CONF).read_text().splitlines():
            if line.startswith("local-port="):
                port = int(line.split("=", 1)[1].strip())
    except (OSError, ValueError):
        pass
    return {"changed": False, "port": port}


@action("dns.inventory")
def inventory(*, domains: list[str]) -> dict[str, Any]:
    """Which of ``domains`` have a zone on this node."""
    names = [validate.domain(d) for d in domains[:500]]
    return {"changed": False, "zones": [n for n in names if _get_zone(n) is not None]}
