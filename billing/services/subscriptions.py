"""Subscriptions: unsuspension after payment, prorated plan changes, cancellation, termination."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.models import (
    ZERO,
    CreditNote,
    Invoice,
    Plan,
    Subscription,
)
from billing.money import money, split_gross
from billing.notifications import notify
from billing.selectors import (
    LineSpec,
    addon_prices,
    price_for,
    running_term,
)
from billing.services.invoices import credit_note_issue, invoice_create
from provisioning import services as provisioning
from provisioning.models import Service, SuspensionHold

logger = logging.getLogger(__name__)


@transaction.atomic
def subscription_restore(*, subscription_id: int, today: dt.date | None = None) -> bool:
    """Lift the non-payment hold once no invoice of the service is overdue any more.

    Only that hold is lifted; a service also held for abuse stays suspended. When another
    operation runs on the service (a nightly backup), the unsuspension starts as soon as it
    ends (see ``provisioning.services.service_unsuspend``).
    """
    today = today or timezone.localdate()
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)
    service = Service.objects.get(pk=sub.service_id)
    if not SuspensionHold.objects.filter(
        service=service, reason=SuspensionHold.Reason.NON_PAYMENT, lifted_at__isnull=True
    ).exists():
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
    term_start, term_end = running_term(
        start=sub.period_start, end=sub.next_due_date, cycle=sub.cycle, today=today
    )
    term_days = (term_end - term_start).days or 1
    days_left = max(0, min(term_days, (term_end - today).days))
    unused = money(sub.amount * days_left / term_days, sub.currency)
    new_part = money(new_amount * days_left / term_days, sub.currency)
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
                f"{plan} from {today} to {term_end} ({days_left} of {term_days} days)",
                new_part,
                period_start=today,
                period_end=term_end,
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
            period_start=today,
            period_end=term_end,
            target_plan=plan,
            actor=actor,
        )
    if net < 0:
        term_credit_back(
            sub=sub,
            net=-net,
            reason=f"Unused time on {sub.plan} after moving to {plan} ({days_left} days)",
            actor=actor,
            today=today,
        )
    _plan_switch(sub=sub, plan=plan, amount=new_amount, actor=actor, today=today)
    return None


def _plan_switch(
    *,
    sub: Subscription,
    plan: Plan,
    amount: Decimal,
    actor: User | None,
    today: dt.date | None = None,
) -> None:
    service = Service.objects.get(pk=sub.service_id)
    provisioning.service_change_plan(service=service, plan=plan, actor=actor)
    sub.plan = plan
    sub.amount = amount
    sub.save(update_fields=["plan", "amount"])
    renewals_reissue(sub=sub, actor=actor, today=today or timezone.localdate())


def _term_invoices(*, sub: Subscription, today: dt.date, lock: bool) -> list[Invoice]:
    """The invoices that bill the term running on ``today`` (its order or renewal invoice and
    any plan-change invoice within it), newest first."""
    owned = Q(subscription=sub)
    if sub.order_id is not None:
        owned |= Q(order_id=sub.order_id)
    rows = Invoice.objects.select_for_update() if lock else Invoice.objects.all()
    return list(
        rows.filter(owned)
        .filter(
            kind__in=[Invoice.Kind.ORDER, Invoice.Kind.RENEWAL, Invoice.Kind.PLAN_CHANGE],
            state__in=[Invoice.State.ISSUED, Invoice.State.OVERDUE, Invoice.State.PAID],
            superseded=False,
            period_start__lte=today,
            period_end__gt=today,
        )
        .order_by("-issue_date", "-id")
    )


def _creditable(invoice: Invoice) -> tuple[Decimal, Decimal]:
    """(unpaid part a credit note may cancel, paid part a credit note may give back)."""
    given_back = (
        CreditNote.objects.filter(invoice=invoice)
        .exclude(disposition=CreditNote.Disposition.CANCEL)
        .aggregate(s=Sum("total"))["s"]
        or ZERO
    )
    unpaid = invoice.amount_due if invoice.is_open else ZERO
    return max(unpaid, ZERO), max(invoice.amount_paid - given_back, ZERO)


def term_credit_plan(
    *, sub: Subscription, net: Decimal, today: dt.date, lock: bool = False
) -> list[tuple[Invoice, str, Decimal]]:
    """How ``net`` (before tax) of the running term is given back: (invoice, disposition,
    gross amount) per credit note, on the invoices that billed the term, newest first, each
    with that invoice's own tax. An unpaid part is cancelled; a paid part goes back as the
    gross amount the customer paid. Nothing goes back beyond what those invoices billed:
    time that was never invoiced here was never paid here. Reads only (the panel shows it)."""
    plan: list[tuple[Invoice, str, Decimal]] = []
    remaining = money(net, sub.currency)
    invoices = _term_invoices(sub=sub, today=today, lock=lock)
    for invoice in invoices:
        rate = ZERO if invoice.reverse_charge else invoice.tax_rate
        unpaid, paid = _creditable(invoice)
        for disposition, room in (
            (CreditNote.Disposition.CANCEL, unpaid),
            (CreditNote.Disposition.CREDIT, paid),
        ):
            if remaining <= 0 or room <= 0:
                continue
            gross = min(money(remaining * (100 + rate) / 100, sub.currency), room)
            covered, _tax = split_gross(gross, rate=rate, currency=sub.currency)
            plan.append((invoice, disposition, gross))
            remaining -= covered
    return plan


def term_credit_back(
    *, sub: Subscription, net: Decimal, reason: str, actor: User | None, today: dt.date
) -> list[CreditNote]:
    """Issue the credit notes ``term_credit_plan`` lays out."""
    notes = [
        credit_note_issue(
            invoice=invoice,
            amount=gross,
            reason=reason,
            disposition=disposition,
            actor=actor,
            today=today,
        )
        for invoice, disposition, gross in term_credit_plan(
            sub=sub, net=net, today=today, lock=True
        )
    ]
    given = sum((n.subtotal for n in notes), ZERO)
    remaining = money(net, sub.currency) - given
    if remaining > 0:
        logger.info(
            "subscription %s: %s %s of unused time was not invoiced here; nothing given back",
            sub.pk,
            remaining,
            sub.currency,
        )
    return notes


def renewals_reissue(*, sub: Subscription, actor: User | None, today: dt.date) -> list[Invoice]:
    """After a plan change, correct the renewal invoices already issued for terms that have
    not started: each is cancelled (what is unpaid) and credited (what is paid) by credit
    notes, and a new one is issued at the new price for the same term. The money paid on the
    first comes back as account credit, which pays the new one first."""
    new_invoices = []
    pending = Invoice.objects.select_for_update().filter(
        subscription=sub,
        kind=Invoice.Kind.RENEWAL,
        superseded=False,
        period_start__gt=today,
        state__in=[Invoice.State.ISSUED, Invoice.State.OVERDUE, Invoice.State.PAID],
    )
    for old in pending.order_by("period_start", "id"):
        if old.subtotal == sub.amount:
            continue
        reason = f"Replaced by an invoice at the price of {sub.plan} (plan changed on {today})"
        unpaid, paid = _creditable(old)
        if unpaid > 0:
            credit_note_issue(
                invoice=old,
                amount=unpaid,
                reason=reason,
                disposition=CreditNote.Disposition.CANCEL,
                actor=actor,
                today=today,
            )
        if paid > 0:
            credit_note_issue(
                invoice=old,
                amount=paid,
                reason=reason,
                disposition=CreditNote.Disposition.CREDIT,
                actor=actor,
                today=today,
            )
        old = Invoice.objects.select_for_update().get(pk=old.pk)
        old.superseded = True
        old.save(update_fields=["superseded"])
        assert old.period_start is not None and old.due_date is not None
        new = invoice_create(
            customer=sub.customer,
            kind=Invoice.Kind.RENEWAL,
            lines=renewal_lines(sub=sub, start=old.period_start, end=old.period_end),
            due_date=old.due_date,
            today=today,
            subscription=sub,
            period_start=old.period_start,
            period_end=old.period_end,
            actor=actor,
            replaces=old,
        )
        new_invoices.append(new)
    return new_invoices


def renewal_lines(*, sub: Subscription, start: dt.date, end: dt.date | None) -> list[LineSpec]:
    """A renewal's lines: the plan at the recurring amount less its addons, then each addon."""
    addons = list(sub.addons.all())
    prices = addon_prices(addons=addons, cycle=sub.cycle, currency=sub.currency)
    addon_sum = sum(prices.values(), ZERO)
    lines = [
        LineSpec(
            f"{sub.plan} ({sub.get_cycle_display().lower()}), {start} to {end}",
            sub.amount - addon_sum,
            period_start=start,
            period_end=end,
        )
    ]
    lines += [LineSpec(addon.name, prices[addon.pk]) for addon in addons]
    return lines


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
    # The change counts from the day its invoice priced it: renewals for terms starting
    # after that day were issued at the old price and are corrected.
    _plan_switch(
        sub=sub, plan=invoice.target_plan, amount=amount, actor=None, today=invoice.period_start
    )
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
    today: dt.date | None = None,
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
    # Cancelled now: the unused days of the term come back through credit notes (with
    # their tax) before the rest of what is unpaid is cancelled.
    today = today or timezone.localdate()
    term_start, term_end = running_term(
        start=sub.period_start, end=sub.next_due_date, cycle=sub.cycle, today=today
    )
    term_days = (term_end - term_start).days or 1
    days_left = max(0, min(term_days, (term_end - today).days))
    unused = money(sub.amount * days_left / term_days, sub.currency)
    if unused > 0:
        term_credit_back(
            sub=sub,
            net=unused,
            reason=f"Cancelled with {days_left} of {term_days} days unused",
            actor=actor,
            today=today,
        )
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
