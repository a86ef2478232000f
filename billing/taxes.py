"""Which tax an invoice carries, from the customer's country and checked VAT id."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from accounts.models import Customer
from billing.models import TaxIdCheck, TaxRate

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class TaxDecision:
    rate: Decimal
    reverse_charge: bool
    note: str
    # The VAT id check this relied on, and why a VAT id did not lead to reverse charge.
    check: TaxIdCheck | None = None
    warning: str = ""


def tax_decide(*, customer: Customer, rates: dict[str, TaxRate] | None = None) -> TaxDecision:
    """The rate for this buyer.

    Buyers in the seller's own country pay its rate. EU businesses elsewhere get reverse
    charge (no tax, a note on the invoice) only when VIES confirmed the VAT id they have now;
    otherwise they pay their country's rate, and the note says why. EU consumers pay their
    country's rate. Buyers in countries without a rate row pay none (exports).
    """
    from billing.vat import tax_id_latest_check

    if rates is None:
        row = TaxRate.objects.filter(country=customer.country).first()
    else:
        row = rates.get(customer.country)
    seller_country = settings.BILLING_SELLER_COUNTRY
    if row is None:
        return TaxDecision(ZERO, False, "No tax: supply outside the tax area.")
    charged = f"{row.name} {percent(row.rate)}% ({row.country})"
    if not (row.in_eu and customer.country != seller_country and customer.tax_id.strip()):
        return TaxDecision(row.rate, False, charged)
    check = tax_id_latest_check(customer=customer)
    if check is not None and check.is_valid:
        day = check.request_date or check.checked_at.date()
        proof = (
            f", consultation number {check.consultation_number}"
            if check.consultation_number
            else ""
        )
        return TaxDecision(
            ZERO,
            True,
            f"Reverse charge: the buyer ({check.tax_id}) accounts for the VAT. VAT id confirmed "
            f"by VIES on {day:%Y-%m-%d}{proof}.",
            check=check,
        )
    why = _why_not(customer.tax_id.strip(), check)
    return TaxDecision(row.rate, False, f"{charged}: {why}", check=check, warning=why)


def _why_not(tax_id: str, check: TaxIdCheck | None) -> str:
    """Why a VAT id did not give reverse charge, in words for the customer."""
    if check is None:
        return f"VAT charged because the VAT id {tax_id} has not been confirmed by VIES yet."
    day = f"{check.checked_at:%Y-%m-%d}"
    if check.status == TaxIdCheck.Status.UNAVAILABLE:
        return (
            f"VAT charged because VIES could not be asked about {check.tax_id} on {day} (the "
            "service did not answer); it is checked again daily."
        )
    if check.status == TaxIdCheck.Status.INVALID:
        return f"VAT charged because VIES does not list {check.tax_id} as registered ({day})."
    return f"VAT charged because {tax_id} is not a valid VAT id."


def percent(rate: Decimal) -> str:
    """19.00 as "19", 7.50 as "7.5" (``normalize`` would write 20 as "2E+1")."""
    return f"{rate:f}".rstrip("0").rstrip(".") if "." in f"{rate:f}" else f"{rate:f}"


def tax_rates_by_country() -> dict[str, TaxRate]:
    return {row.country: row for row in TaxRate.objects.all()}
