"""VAT ids: their format and check digits (python-stdnum), then VIES, and who may change them.

The rule for changes, as customers see it in their account settings:

- The VAT id may change at any time, but only through a new check: an id with a wrong format
  or wrong check digits, or one VIES says is not registered, is refused and nothing changes.
  An id VIES cannot check right now (the member state's service is down) is kept, and VAT is
  charged until a later check (the daily run tries again) confirms it.
- The country may change freely until the first invoice is issued. After that it is on
  invoices and decides the tax, so only staff change it (in the admin, through the same
  function, which checks the VAT id again for the new country).
- Issued invoices never change: they keep the buyer as they were (``Invoice.bill_to``) and
  name the check they relied on (``Invoice.tax_check``).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, ValidationError

from accounts.models import Customer, User, country_code
from accounts.services import audit_record
from billing.errors import BillingError
from billing.gateways.base import GatewayError, VatGateway
from billing.gateways.vies import ViesGateway, vies_country
from billing.models import Invoice, TaxIdCheck, TaxRate

logger = logging.getLogger(__name__)

# ISO country codes whose VAT ids VIES knows (Greece is GR here, EL in its VAT ids).
EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)


def gateway() -> VatGateway:
    return ViesGateway()


def is_eu(country: str) -> bool:
    return country.upper() in EU_COUNTRIES


def vat_id_compact(*, country: str, raw: str) -> str:
    """``raw`` in its compact form with the country prefix (``DE136695976``), or a refusal
    saying what is wrong. A number typed without its prefix gets the country's."""
    text = raw.strip()
    if not text:
        return ""
    prefix = vies_country(country)
    try:
        bare = text.upper()
        if not bare[:2].isalpha() or not bare[:2].isascii():
            bare = prefix + bare
        if bare[:2] != prefix:
            raise BillingError(
                f"A VAT id from {country.upper()} starts with {prefix}; {text!r} does not."
            )
        return str(eu_vat.validate(bare))
    except InvalidChecksum:
        raise BillingError(f"{text!r} is not a valid VAT id: its check digits are wrong.") from None
    except ValidationError:
        raise BillingError(
            f"{text!r} is not a valid VAT id for {country.upper()}: check its format."
        ) from None


def tax_id_check_run(
    *, customer: Customer, country: str, tax_id: str, actor: User | None = None
) -> TaxIdCheck:
    """Check one id (already compact, with its prefix) with VIES and record the answer.

    Customers' paths call this outside any transaction (VIES may take seconds); the row is
    written after VIES answered, or did not."""
    status, message = TaxIdCheck.Status.UNAVAILABLE, ""
    request_date: dt.date | None = None
    consultation = name = address = ""
    try:
        result = gateway().check(country=country, number=tax_id[2:])
    except GatewayError as exc:
        message = exc.message
        if exc.permanent:
            status = TaxIdCheck.Status.INVALID
    else:
        status = TaxIdCheck.Status.VALID if result.valid else TaxIdCheck.Status.INVALID
        request_date = result.request_date
        consultation, name, address = result.consultation_number, result.name, result.address
        if not result.valid:
            message = "VIES does not list it as registered"
    check = TaxIdCheck.objects.create(
        customer=customer,
        country=country,
        tax_id=tax_id,
        status=status,
        request_date=request_date,
        consultation_number=consultation,
        registered_name=name,
        registered_address=address,
        message=message[:300],
        checked_by=actor,
    )
    audit_record(
        action="billing.tax_id_checked",
        actor=actor,
        target=check,
        customer=customer,
        detail={"tax_id": tax_id, "status": status, "consultation": consultation},
    )
    return check


def tax_id_latest_check(*, customer: Customer) -> TaxIdCheck | None:
    """The newest check of the id the customer has now, in the country they are in now."""
    if not customer.tax_id.strip() or not is_eu(customer.country):
        return None
    try:
        compact = vat_id_compact(country=customer.country, raw=customer.tax_id)
    except BillingError:
        return None
    return (
        TaxIdCheck.objects.filter(customer=customer, country=customer.country, tax_id=compact)
        .order_by("-checked_at", "-id")
        .first()
    )


def has_invoices(customer: Customer) -> bool:
    return Invoice.objects.filter(customer=customer).exclude(state=Invoice.State.DRAFT).exists()


def customer_tax_identity_change(
    *,
    customer: Customer,
    country: str,
    tax_id: str,
    actor: User | None,
    by_staff: bool = False,
) -> TaxIdCheck | None:
    """Change the customer's country and VAT id under the rule at the top of this module.

    Returns the check of the new id (None when there is none to check: no id, or a country
    outside the EU, where the id is kept as written). Raises ``BillingError`` with the reason,
    having changed nothing, when the change is refused.
    """
    country = country.strip().upper()
    country_code(country)
    tax_id = tax_id.strip()
    if len(tax_id) > 40:
        raise BillingError("A tax id has at most 40 characters.")
    if country != customer.country and not by_staff and has_invoices(customer):
        raise BillingError(
            "Your country is on your invoices and decides their tax, so it can no longer be "
            "changed here. Write to support: staff change it after checking."
        )
    compact = vat_id_compact(country=country, raw=tax_id) if is_eu(country) else tax_id
    check: TaxIdCheck | None = None
    if compact and is_eu(country):
        check = tax_id_check_run(customer=customer, country=country, tax_id=compact, actor=actor)
        if check.status == TaxIdCheck.Status.INVALID:
            raise BillingError(
                f"VIES does not list {compact} as a registered VAT id, so it was not saved. "
                "Check the number, or remove it to be billed as a consumer."
            )
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        changed = {
            k: v
            for k, v in {"country": country, "tax_id": compact}.items()
            if getattr(locked, k) != v
        }
        if changed:
            for key, value in changed.items():
                setattr(locked, key, value)
            locked.save(update_fields=list(changed))
            audit_record(
                action="billing.tax_identity_changed",
                actor=actor,
                target=locked,
                customer=locked,
                detail={"changed": changed, "check": check.status if check else ""},
            )
        customer.country, customer.tax_id = locked.country, locked.tax_id
    return check


def tax_id_recheck_run(*, today: dt.date) -> int:
    """Check again, once a day, the EU VAT ids whose last check had no answer (or that were
    never checked): reverse charge starts with the first confirmed check."""
    foreign_eu = (
        TaxRate.objects.filter(in_eu=True)
        .exclude(country=_seller_country())
        .values_list("country", flat=True)
    )
    checked = 0
    for customer in Customer.objects.filter(country__in=list(foreign_eu)).exclude(tax_id=""):
        latest = tax_id_latest_check(customer=customer)
        if latest is not None and (
            latest.status != TaxIdCheck.Status.UNAVAILABLE
            or timezone.localdate(latest.checked_at) >= today
        ):
            continue
        try:
            compact = vat_id_compact(country=customer.country, raw=customer.tax_id)
        except BillingError:
            continue
        tax_id_check_run(customer=customer, country=customer.country, tax_id=compact)
        checked += 1
    return checked


def _seller_country() -> str:
    from django.conf import settings

    return str(settings.BILLING_SELLER_COUNTRY)
