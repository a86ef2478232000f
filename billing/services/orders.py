"""Orders: checkout, and handing a paid order to the provisioning engine exactly once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.models import (
    Addon,
    BillingSettings,
    Coupon,
    Invoice,
    Order,
    PaymentMethod,
    Plan,
    Subscription,
)
from billing.selectors import (
    order_quote,
)
from billing.services.invoices import invoice_create
from provisioning import services as provisioning
from provisioning.errors import ProvisioningRefused
from provisioning.validators import validate_domain

logger = logging.getLogger(__name__)


def clean_domain(value: str) -> str:
    """The domain to host, lower-case and in its ASCII (IDNA) form, or a clear refusal.

    A leading ``www.`` is dropped (the account serves www itself); the rest is the panel's
    one domain check (``provisioning.validators.validate_domain``).
    """
    name = value.strip()
    if name.lower().startswith("www."):
        name = name[4:]
    try:
        return validate_domain(name)
    except ProvisioningRefused as exc:
        raise BillingError(exc.messages[0]) from None


def addons_check(*, addons: Sequence[Addon], plan: Plan) -> None:
    """Refuse add-ons that would be charged for nothing: one the plan already includes, or a
    dedicated IP when no server has a free address to give."""
    from provisioning.selectors import dedicated_ip_available

    kinds = [a.kind for a in addons]
    if any(not a.is_active for a in addons):
        raise BillingError("One of the add-ons is no longer sold.")
    if kinds.count(Addon.Kind.DEDICATED_IP) > 1:
        raise BillingError("One dedicated IP address per account.")
    if Addon.Kind.DEDICATED_IP in kinds:
        if plan.dedicated_ip:
            raise BillingError(f"{plan.name} already includes a dedicated IP address.")
        if not dedicated_ip_available():
            raise BillingError(
                "No dedicated IP address is free right now; order without it, or ask support."
            )


@transaction.atomic
def order_place(
    *,
    customer: Customer,
    plan: Plan,
    cycle: str,
    domain: str,
    addons: Sequence[Addon] = (),
    coupon_code: str = "",
    actor: User | None = None,
    today: dt.date | None = None,
) -> Order:
    """Check out: the order and its invoice (numbered, credit applied), coupon counted once."""
    today = today or timezone.localdate()
    domain = clean_domain(domain)
    addons_check(addons=addons, plan=plan)
    if coupon_code.strip():
        # Lock the coupon first so two checkouts cannot both take its last redemption.
        Coupon.objects.select_for_update().filter(code=coupon_code.strip().upper()).first()
    quote = order_quote(
        customer=customer,
        plan=plan,
        cycle=cycle,
        addons=addons,
        coupon_code=coupon_code,
        today=today,
    )
    order = Order.objects.create(
        customer=customer,
        plan=plan,
        cycle=cycle,
        currency=quote.currency,
        domain=domain,
        coupon=quote.coupon,
        recurring_amount=quote.recurring,
        state=Order.State.ISSUED,
        created_by=actor,
    )
    order.addons.set(addons)
    if quote.coupon is not None:
        Coupon.objects.filter(pk=quote.coupon.pk).update(times_redeemed=F("times_redeemed") + 1)
    audit_record(
        action="billing.order_placed",
        actor=actor,
        target=order,
        customer=customer,
        detail={"plan": plan.slug, "cycle": cycle, "domain": domain},
    )
    config = BillingSettings.load()
    invoice_create(
        customer=customer,
        kind=Invoice.Kind.ORDER,
        lines=quote.lines,
        due_date=today + dt.timedelta(days=config.order_payment_days),
        today=today,
        order=order,
        period_start=quote.period_start,
        period_end=quote.period_end,
        actor=actor,
    )
    return order


@transaction.atomic
def order_fulfil(*, order_id: int) -> Subscription | None:
    """Hand a paid order to the provisioning engine, exactly once, and start its subscription.

    Runs after the payment committed. The order row lock and ``fulfilled_at`` make a second
    call (a retry, the daily sweep) a no-op.
    """
    order = Order.objects.select_for_update().select_related("customer", "plan").get(pk=order_id)
    if order.state != Order.State.PAID:
        return None
    if order.fulfilled_at is not None:
        return Subscription.objects.filter(order=order).first()
    try:
        with transaction.atomic():
            addons = list(order.addons.all())
            service = provisioning.service_order(
                customer=order.customer,
                plan=order.plan,
                domain=order.domain,
                actor=order.created_by,
                dedicated_ip=any(a.kind == Addon.Kind.DEDICATED_IP for a in addons),
                extra_disk_mb=sum(
                    a.extra_disk_mb for a in addons if a.kind == Addon.Kind.EXTRA_STORAGE
                ),
            )
    except ProvisioningRefused as exc:
        order.fulfil_error = "; ".join(exc.messages)
        order.save(update_fields=["fulfil_error"])
        logger.warning("order %s not handed to provisioning: %s", order.pk, order.fulfil_error)
        return None
    invoice = Invoice.objects.get(order=order)
    start = invoice.period_start or timezone.localdate()
    sub = Subscription.objects.create(
        service=service,
        customer=order.customer,
        plan=order.plan,
        order=order,
        cycle=order.cycle,
        currency=order.currency,
        amount=order.recurring_amount,
        period_start=start,
        next_due_date=invoice.period_end or start,
        payment_method=PaymentMethod.objects.filter(
            customer=order.customer, is_default=True
        ).first(),
    )
    sub.addons.set(order.addons.all())
    order.fulfilled_at = timezone.now()
    order.fulfil_error = ""
    order.save(update_fields=["fulfilled_at", "fulfil_error"])
    audit_record(
        action="billing.order_fulfilled",
        target=order,
        customer=order.customer,
        detail={"service": service.pk, "subscription": sub.pk},
    )
    return sub


def order_fulfil_quietly(*, order_id: int) -> None:
    """``order_fulfil`` for on-commit hooks: a failure is logged and left for the daily sweep."""
    try:
        order_fulfil(order_id=order_id)
    except Exception:
        logger.exception("fulfilling order %s failed; the daily run will retry", order_id)
