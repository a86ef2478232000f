"""VIES, the EU's register of VAT ids, through its REST API (``check-vat-number``).

``VIES_API_BASE`` says where: the local stand-in (``deploy/dev/vies_standin.py``) in tests
and the demo, the European Commission's service in production. The seller's own VAT id is
sent as the requester, so that VIES returns a consultation number: the proof, for a tax
audit, that the buyer's id was checked on that day.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings

from billing.gateways.base import GatewayError, VatCheckResult

DEFAULT_API_BASE = "https://ec.europa.eu/taxation_customs/vies/rest-api"

# Errors after which the same question may get an answer later; VIES names them so.
TRANSIENT = {
    "SERVICE_UNAVAILABLE",
    "MS_UNAVAILABLE",
    "TIMEOUT",
    "GLOBAL_MAX_CONCURRENT_REQ",
    "MS_MAX_CONCURRENT_REQ",
}


def vies_country(country: str) -> str:
    """VIES's member state code: Greece is EL there, GR elsewhere."""
    return "EL" if country.upper() == "GR" else country.upper()


def _requester() -> tuple[str, str]:
    seller = str(settings.BILLING_SELLER.get("tax_id", "")).replace(" ", "").upper()
    if len(seller) > 2 and seller[:2].isalpha():
        return seller[:2], seller[2:]
    return "", ""


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (https or the loopback stand-in, from settings)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.VIES_TIMEOUT) as response:  # noqa: S310
            payload = response.read(65536)
    except urllib.error.HTTPError as exc:
        # VIES answers errors with a JSON body too; read it for the error name.
        payload = exc.read(65536)
        if not payload:
            raise GatewayError(f"VIES answered HTTP {exc.code}", permanent=False) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise GatewayError(f"VIES could not be reached ({exc})", permanent=False) from None
    try:
        data = json.loads(payload)
    except ValueError:
        raise GatewayError("VIES answered something that is not JSON", permanent=False) from None
    if not isinstance(data, dict):
        raise GatewayError("VIES answered something unexpected", permanent=False)
    return data


def _date(value: object) -> dt.date:
    """VIES dates look like 2026-12-02+01:00 or a full timestamp; the day is what counts."""
    text = str(value or "")[:10]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return dt.date.today()


class ViesGateway:
    name = "vies"

    def check(self, *, country: str, number: str) -> VatCheckResult:
        base = (settings.VIES_API_BASE or DEFAULT_API_BASE).rstrip("/")
        requester_country, requester_number = _requester()
        body = {"countryCode": vies_country(country), "vatNumber": number}
        if requester_number:
            body["requesterMemberStateCode"] = requester_country
            body["requesterNumber"] = requester_number
        data = _post(f"{base}/check-vat-number", body)
        errors = data.get("errorWrappers") or []
        if data.get("actionSucceed") is False or errors:
            names = [str(e.get("error", "")) for e in errors if isinstance(e, dict)]
            name = names[0] if names else "UNKNOWN"
            if name in TRANSIENT or name == "UNKNOWN":
                raise GatewayError(f"VIES is unavailable ({name})", permanent=False)
            raise GatewayError(f"VIES refused the question ({name})", permanent=True)
        if "valid" not in data:
            raise GatewayError("VIES answered without a verdict", permanent=False)
        return VatCheckResult(
            valid=data.get("valid") is True,
            request_date=_date(data.get("requestDate")),
            consultation_number=str(data.get("requestIdentifier") or "")[:60],
            name=str(data.get("name") or "").strip()[:300],
            address=str(data.get("address") or "").strip()[:2000],
        )
