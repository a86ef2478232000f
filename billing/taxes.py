"""Which tax an invoice carries, from the customer's country and tax id."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from accounts.models import Customer
from billing.models import TaxRate

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class TaxDecision:
    rate: Decimal
    reverse_charge: bool
    note: str


def tax_decide(*, customer: Customer, rates: dict[str, TaxRate] | None = None) -> TaxDecision:
    """The rate for this buyer.

    Buyers in the seller's own country pay its rate. EU businesses elsewhere with a tax id
    get reverse charge (no tax, a note on the invoice); EU consumers pay their country's rate.
    Buyers in countries without a rate row pay none (exports).
    """
    if rates is None:
        row = TaxRate.objects.filter(country=customer.country).first()
    else:
        row = rates.get(customer.country)
    seller_country = settings.BILLING_SELLER_COUNTRY
    if row is None:
        return TaxDecision(ZERO, False, "No tax: supply outside the tax area.")
    if row.in_eu and customer.country != seller_country and customer.tax_id.strip():
        return TaxDecision(
            ZERO,
            True,
            f"Reverse charge: the buyer ({customer.tax_id.strip()}) accounts for the VAT.",
        )
    return TaxDecision(row.rate, False, f"{row.name} {percent(row.rate)}% ({row.country})")


def percent(rate: Decimal) -> str:
    """19.00 as "19", 7.50 as "7.5" (``normalize`` would write 20 as "2E+1")."""
    return f"{rate:f}".rstrip("0").rstrip(".") if "." in f"{rate:f}" else f"{rate:f}"


def tax_rates_by_country() -> dict[str, TaxRate]:
    return {row.country: row for row in TaxRate.objects.all()}
