"""Subscriptions: unsuspension after payment, prorated plan changes, cancellation, termination."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.models import (
    ZERO,
    CreditEntry,
    CreditNote,
    Invoice,
    Plan,
    Subscription,
)
from billing.money import money
from billing.notifications import notify
from billing.selectors import (
    LineSpec,
    addon_prices,
    price_for,
)
from billing.services.invoices import credit_note_issue, invoice_create
from provisioning import services as provisioning
from provisioning.models import Service

logger = logging.getLogger(__name__)


@transaction.atomic
def subscription_restore(*, subscription_id: int, today: dt.date | None = None) -> bool:
    """Lift a non-payment suspension once no invoice of the service is overdue any more.

    Only the non-payment reason is lifted; a service also held for abuse stays suspended.
    """
    today = today or timezone.localdate()
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)
    service = Service.objects.get(pk=sub.service_id)
    if "non_payment" not in (service.suspension_reasons or []):
        return False
    if Invoice.objects.filter(
        subscription=sub, state__in=Invoice.OPEN_STATES, due_date__lt=today
    ).exists():
        return False
    provisioning.service_unsuspend(service=service, reason="non_payment")
    audit_record(action="billing.service_unsuspended", target=sub, customer=sub.customer)
    notify(
        key=f"unsuspended-{sub.pk}-{timezone.now():%Y%m%d%H%M%S%f}",
        customer=sub.customer,
        kind="unsuspended",
        domain=service.domain,
    )
    return True


def subscription_restore_quietly(*, subscription_id: int) -> None:
    try:
        subscription_restore(subscription_id=subscription_id)
    except Exception:
        logger.exception(
            "unsuspending subscription %s failed; the daily run will retry", subscription_id
        )


@transaction.atomic
def subscription_change_plan(
    *,
    subscription: Subscription,
    plan: Plan,
    actor: User | None = None,
    today: dt.date | None = None,
) -> Invoice | None:
    """Move to another plan, prorated by day over the current term.

    The unused part of the current term is credited and the rest of the term on the new plan
    charged. An upgrade issues an invoice and moves once it is paid; a downgrade moves now and
    puts the difference on the account credit.
    """
    today = today or timezone.localdate()
    sub = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if sub.state != Subscription.State.ACTIVE:
        raise BillingError("This subscription is cancelled.")
    if plan.pk == sub.plan_id:
        raise BillingError(f"The service is already on {plan.name}.")
    if not plan.is_active:
        raise BillingError(f"{plan.name} is no longer sold.")
    if Invoice.objects.filter(
        subscription=sub, kind=Invoice.Kind.PLAN_CHANGE, state__in=Invoice.OPEN_STATES
    ).exists():
        raise BillingError("A plan change is already waiting for payment.")
    addon_total = sum(
        addon_prices(addons=sub.addons.all(), cycle=sub.cycle, currency=sub.currency).values(),
        ZERO,
    )
    new_amount = price_for(plan=plan, cycle=sub.cycle, currency=sub.currency) + addon_total
    term_days = (sub.next_due_date - sub.period_start).days or 1
    days_left = max(0, min(term_days, (sub.next_due_date - today).days))
    unused = money(sub.amount * days_left / term_days)
    new_part = money(new_amount * days_left / term_days)
    net = new_part - unused
    audit_record(
        action="billing.plan_change_requested",
        actor=actor,
        target=sub,
        customer=sub.customer,
        detail={"from": sub.plan.slug, "to": plan.slug, "net": str(net), "days_left": days_left},
    )
    if net > 0:
        lines = [
            LineSpec(
                f"{plan} from {today} to {sub.next_due_date} ({days_left} of {term_days} days)",
                new_part,
                period_start=today,
                period_end=sub.next_due_date,
            ),
            LineSpec(f"Unused time on {sub.plan} ({days_left} days)", -unused),
        ]
        return invoice_create(
            customer=sub.customer,
            kind=Invoice.Kind.PLAN_CHANGE,
            lines=lines,
            due_date=today,
            today=today,
            subscription=sub,
            target_plan=plan,
            actor=actor,
        )
    if net < 0:
        CreditEntry.objects.create(
            customer=sub.customer,
            currency=sub.currency,
            amount=-net,
            kind=CreditEntry.Kind.PRORATION,
            memo=f"Unused time on {sub.plan} after moving to {plan} ({days_left} days)",
            created_by=actor,
        )
    _plan_switch(sub=sub, plan=plan, amount=new_amount, actor=actor)
    return None


def _plan_switch(*, sub: Subscription, plan: Plan, amount: Decimal, actor: User | None) -> None:
    service = Service.objects.get(pk=sub.service_id)
    provisioning.service_change_plan(service=service, plan=plan, actor=actor)
    sub.plan = plan
    sub.amount = amount
    sub.save(update_fields=["plan", "amount"])


@transaction.atomic
def subscription_plan_apply(*, invoice_id: int) -> bool:
    """Carry out a paid plan-change invoice (once: a second call finds the plan already set)."""
    invoice = Invoice.objects.select_related("target_plan").get(pk=invoice_id)
    if (
        invoice.state != Invoice.State.PAID
        or invoice.target_plan is None
        or invoice.subscription_id is None
    ):
        return False
    sub = Subscription.objects.select_for_update().get(pk=invoice.subscription_id)
    if sub.plan_id == invoice.target_plan_id:
        return False
    addon_total = sum(
        addon_prices(addons=sub.addons.all(), cycle=sub.cycle, currency=sub.currency).values(),
        ZERO,
    )
    amount = (
        price_for(plan=invoice.target_plan, cycle=sub.cycle, currency=sub.currency) + addon_total
    )
    _plan_switch(sub=sub, plan=invoice.target_plan, amount=amount, actor=None)
    return True


def subscription_plan_apply_quietly(*, invoice_id: int) -> None:
    try:
        subscription_plan_apply(invoice_id=invoice_id)
    except Exception:
        logger.exception("plan change of invoice %s failed; the daily run will retry", invoice_id)


@transaction.atomic
def subscription_cancel(
    *,
    subscription: Subscription,
    at_period_end: bool,
    actor: User | None = None,
    reason: str = "Cancelled by the customer",
) -> Subscription:
    """Cancel now (the service is terminated, open invoices cancelled) or at the term's end."""
    sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if sub.state != Subscription.State.ACTIVE:
        raise BillingError("This subscription is already cancelled.")
    if at_period_end:
        sub.cancel_at_period_end = True
        sub.save(update_fields=["cancel_at_period_end"])
        audit_record(
            action="billing.cancel_at_period_end", actor=actor, target=sub, customer=sub.customer
        )
        return sub
    subscription_terminate(subscription=sub, actor=actor, reason=reason)
    return sub


def subscription_terminate(*, subscription: Subscription, actor: User | None, reason: str) -> None:
    """Close the service and stop billing it; unpaid invoices are cancelled by credit notes."""
    sub = subscription
    service = Service.objects.get(pk=sub.service_id)
    if service.state != "terminated":
        provisioning.service_terminate(service=service, actor=actor)
    sub.cancel(at=timezone.now())
    sub.save(update_fields=["state", "cancelled_at"])
    for invoice in Invoice.objects.filter(subscription=sub, state__in=Invoice.OPEN_STATES):
        credit_note_issue(
            invoice=invoice,
            amount=invoice.amount_due,
            reason=reason,
            disposition=CreditNote.Disposition.CANCEL,
            actor=actor,
        )
    audit_record(
        action="billing.subscription_terminated",
        actor=actor,
        target=sub,
        customer=sub.customer,
        detail={"reason": reason},
    )
