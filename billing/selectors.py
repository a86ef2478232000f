"""Reads: the catalog for the storefront, order quotes, balances, what a customer owes."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Prefetch, QuerySet, Sum
from django.utils import timezone

from accounts.models import Customer
from billing.errors import BillingError
from billing.models import (
    CYCLE_MONTHS,
    ZERO,
    Addon,
    AddonPrice,
    BillingCycle,
    Coupon,
    CreditEntry,
    Invoice,
    Order,
    Plan,
    Price,
    Product,
)
from billing.money import money
from billing.taxes import TaxDecision, tax_decide


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, kept on the last day when the month is shorter."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def cycle_end(start: dt.date, cycle: str) -> dt.date:
    return add_months(start, CYCLE_MONTHS[BillingCycle(cycle)])


def running_term(
    *, start: dt.date, end: dt.date, cycle: str, today: dt.date
) -> tuple[dt.date, dt.date]:
    """The term a subscription is in on ``today``: (start, end). When the next term was paid
    ahead (its start is still to come), the running one is the term before it."""
    if start > today:
        return add_months(start, -CYCLE_MONTHS[BillingCycle(cycle)]), start
    return start, end


def catalog_for_storefront(*, currency: str) -> list[Product]:
    """Active products with their active plans and the plans' prices in ``currency``."""
    prices = Price.objects.filter(currency=currency)
    plans = Plan.objects.filter(is_active=True).prefetch_related(
        Prefetch("prices", queryset=prices, to_attr="shown_prices")
    )
    return list(
        Product.objects.filter(is_active=True).prefetch_related(
            Prefetch("plans", queryset=plans, to_attr="shown_plans")
        )
    )


def price_for(*, plan: Plan, cycle: str, currency: str) -> Decimal:
    row = Price.objects.filter(plan=plan, cycle=cycle, currency=currency).first()
    if row is None:
        raise BillingError(
            f"{plan.name} is not sold {BillingCycle(cycle).label.lower()} in {currency}."
        )
    return row.amount


def addon_prices(*, addons: Iterable[Addon], cycle: str, currency: str) -> dict[int, Decimal]:
    addon_list = list(addons)
    found = {
        row.addon_id: row.amount
        for row in AddonPrice.objects.filter(addon__in=addon_list, cycle=cycle, currency=currency)
    }
    for addon in addon_list:
        if addon.pk not in found:
            raise BillingError(f"{addon.name} is not sold in {currency} for this cycle.")
    return found


@dataclass(frozen=True)
class LineSpec:
    description: str
    amount: Decimal
    quantity: Decimal = Decimal("1")
    period_start: dt.date | None = None
    period_end: dt.date | None = None


@dataclass
class Quote:
    """What an order will cost: lines (net), tax and total, in one currency."""

    currency: str
    lines: list[LineSpec]
    tax: TaxDecision
    coupon: Coupon | None = None
    recurring: Decimal = ZERO
    period_start: dt.date | None = None
    period_end: dt.date | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def subtotal(self) -> Decimal:
        return money(
            sum((money(line.amount * line.quantity, self.currency) for line in self.lines), ZERO),
            self.currency,
        )

    @property
    def tax_total(self) -> Decimal:
        return money(self.subtotal * self.tax.rate / 100, self.currency)

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax_total


def coupon_check(
    *, code: str, customer: Customer | None, plan: Plan, currency: str, now: dt.datetime
) -> Coupon:
    """The coupon behind ``code`` if it may be used for this order, else a clear refusal."""
    coupon = Coupon.objects.filter(code=code.strip().upper()).first()
    if coupon is None or not coupon.is_active:
        raise BillingError(f"The coupon {code.strip().upper()} does not exist.")
    if coupon.valid_from and now < coupon.valid_from:
        raise BillingError(f"The coupon {coupon.code} is not valid yet.")
    if coupon.valid_until and now > coupon.valid_until:
        raise BillingError(f"The coupon {coupon.code} has expired.")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise BillingError(f"The coupon {coupon.code} has been used up.")
    if coupon.kind == Coupon.Kind.FIXED and coupon.currency != currency:
        raise BillingError(f"The coupon {coupon.code} is for orders in {coupon.currency}.")
    if coupon.plans.exists() and not coupon.plans.filter(pk=plan.pk).exists():
        raise BillingError(f"The coupon {coupon.code} is not valid for {plan.name}.")
    if (
        customer is not None
        and coupon.once_per_customer
        and Order.objects.filter(customer=customer, coupon=coupon)
        .exclude(state=Order.State.VOID)
        .exists()
    ):
        raise BillingError(f"You have already used the coupon {coupon.code}.")
    return coupon


def order_quote(
    *,
    customer: Customer,
    plan: Plan,
    cycle: str,
    addons: Sequence[Addon] = (),
    coupon_code: str = "",
    today: dt.date | None = None,
) -> Quote:
    """Price an order for this customer: plan, addons, coupon discount, tax."""
    today = today or timezone.localdate()
    currency = customer.currency
    if cycle not in BillingCycle.values:
        raise BillingError(f"{cycle!r} is not a billing cycle.")
    if not plan.is_active:
        raise BillingError(f"{plan.name} is no longer sold.")
    end = cycle_end(today, cycle)
    label = BillingCycle(cycle).label.lower()
    base = price_for(plan=plan, cycle=cycle, currency=currency)
    lines = [
        LineSpec(f"{plan} ({label}), {today} to {end}", base, period_start=today, period_end=end)
    ]
    extra = addon_prices(addons=addons, cycle=cycle, currency=currency)
    for addon in addons:
        lines.append(
            LineSpec(f"{addon.name} ({label})", extra[addon.pk], period_start=today, period_end=end)
        )
    recurring = money(sum((line.amount for line in lines), ZERO), currency)
    coupon = None
    if coupon_code.strip():
        coupon = coupon_check(
            code=coupon_code, customer=customer, plan=plan, currency=currency, now=timezone.now()
        )
        if coupon.kind == Coupon.Kind.PERCENT:
            discount = money(recurring * coupon.value / 100, currency)
        else:
            discount = money(coupon.value, currency)
        discount = min(discount, recurring)
        lines.append(LineSpec(f"Coupon {coupon.code}", -discount))
    return Quote(
        currency=currency,
        lines=lines,
        tax=tax_decide(customer=customer),
        coupon=coupon,
        recurring=recurring,
        period_start=today,
        period_end=end,
    )


def credit_balance(*, customer: Customer, currency: str) -> Decimal:
    total = CreditEntry.objects.filter(customer=customer, currency=currency).aggregate(
        s=Sum("amount")
    )["s"]
    return money(total or ZERO, currency)


def invoices_for_customer(*, customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer).exclude(state=Invoice.State.DRAFT)


def open_invoices(*, customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer, state__in=Invoice.OPEN_STATES)
