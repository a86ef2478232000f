"""Writes: orders, invoices, payments, credit, credit notes, refunds, subscriptions.

Every function that changes state runs in one transaction, locks the rows it moves, checks
their state again after the lock, and leaves calls to other systems (the provisioning engine's
queue, e-mail) until after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.gateways import stripe as stripe_gateway
from billing.gateways.base import GatewayError
from billing.models import (
    ZERO,
    Addon,
    BillingSettings,
    Coupon,
    CreditEntry,
    CreditNote,
    DocumentSeries,
    GatewayCustomer,
    Invoice,
    InvoiceLine,
    Order,
    Payment,
    PaymentMethod,
    Plan,
    Subscription,
)
from billing.money import check_amount, money
from billing.notifications import notify
from billing.selectors import (
    LineSpec,
    addon_prices,
    credit_balance,
    order_quote,
    price_for,
)
from billing.taxes import TaxDecision, tax_decide
from provisioning import services as provisioning
from provisioning.errors import ProvisioningRefused
from provisioning.models import Service

logger = logging.getLogger(__name__)

DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def clean_domain(value: str) -> str:
    """The domain to host, lower-case and in its ASCII (IDNA) form, or a clear refusal."""
    name = value.strip().lower().rstrip(".")
    if name.startswith("www."):
        name = name[4:]
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise BillingError(f"{value!r} is not a valid domain name.") from None
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253 or not all(DOMAIN_LABEL.match(x) for x in labels):
        raise BillingError(f"{value!r} is not a valid domain name, e.g. example.com.")
    if labels[-1].isdigit():
        raise BillingError(f"{value!r} is not a valid domain name, e.g. example.com.")
    return ascii_name


# -- numbering -------------------------------------------------------------------------------


def document_numbers_allocate(*, prefix: str, year: int, count: int = 1) -> list[str]:
    """Take the next ``count`` numbers of a series: gapless because the counter row is locked
    until the caller's transaction ends, and rolled back with it if that transaction fails."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("numbers are allocated inside the transaction that uses them")
    key = f"{prefix}-{year}"
    DocumentSeries.objects.bulk_create([DocumentSeries(key=key)], ignore_conflicts=True)
    series = DocumentSeries.objects.select_for_update().get(key=key)
    first = series.last_number + 1
    series.last_number += count
    series.save(update_fields=["last_number"])
    return [f"{key}-{n:06d}" for n in range(first, first + count)]


# -- invoices --------------------------------------------------------------------------------


def bill_to(customer: Customer) -> dict[str, str]:
    return {
        "name": customer.name,
        "company": customer.company,
        "address_line1": customer.address_line1,
        "address_line2": customer.address_line2,
        "postal_code": customer.postal_code,
        "city": customer.city,
        "country": customer.country,
        "tax_id": customer.tax_id,
    }


def invoice_totals(lines: Sequence[LineSpec], tax: TaxDecision) -> tuple[Decimal, Decimal]:
    """(subtotal, tax): tax is computed once on the subtotal so the totals always add up."""
    subtotal = money(sum((money(line.amount) for line in lines), ZERO))
    if subtotal < 0:
        raise BillingError("An invoice cannot total less than zero; use account credit.")
    return subtotal, money(subtotal * tax.rate / 100)


@transaction.atomic
def invoice_create(
    *,
    customer: Customer,
    kind: str,
    lines: Sequence[LineSpec],
    due_date: dt.date,
    today: dt.date | None = None,
    order: Order | None = None,
    subscription: Subscription | None = None,
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    target_plan: Plan | None = None,
    actor: User | None = None,
) -> Invoice:
    """Issue an invoice with its number, apply account credit to it, and mail it."""
    today = today or timezone.localdate()
    if not lines:
        raise BillingError("An invoice needs at least one line.")
    tax = tax_decide(customer=customer)
    subtotal, tax_total = invoice_totals(lines, tax)
    (number,) = document_numbers_allocate(prefix="INV", year=today.year)
    invoice = Invoice.objects.create(
        customer=customer,
        kind=kind,
        state=Invoice.State.ISSUED,
        number=number,
        currency=customer.currency,
        subtotal=subtotal,
        tax_rate=tax.rate,
        tax_total=tax_total,
        total=subtotal + tax_total,
        reverse_charge=tax.reverse_charge,
        tax_note=tax.note,
        bill_to=bill_to(customer),
        issue_date=today,
        due_date=due_date,
        order=order,
        subscription=subscription,
        period_start=period_start,
        period_end=period_end,
        target_plan=target_plan,
    )
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=i,
                description=line.description,
                quantity=line.quantity,
                unit_amount=money(line.amount),
                amount=money(line.amount * line.quantity),
                period_start=line.period_start,
                period_end=line.period_end,
            )
            for i, line in enumerate(lines)
        ]
    )
    audit_record(
        action="billing.invoice_issued",
        actor=actor,
        target=invoice,
        customer=customer,
        detail={"number": number, "total": str(invoice.total), "currency": invoice.currency},
    )
    _credit_apply(invoice=invoice)
    notify(
        key=f"invoice-issued-{invoice.pk}",
        customer=customer,
        kind="invoice_issued",
        number=number,
        total=invoice.total,
        currency=invoice.currency,
        due_date=due_date,
        invoice_id=invoice.pk,
        auto_charge=bool(subscription and subscription.payment_method_id),
    )
    if invoice.amount_due == 0:
        _invoice_settle(invoice=invoice, actor=actor)
    return invoice


def _credit_apply(*, invoice: Invoice) -> Decimal:
    """Use the customer's account credit on an open invoice first. Returns the amount used."""
    # The customer row lock serializes every use of one customer's credit.
    Customer.objects.select_for_update().filter(pk=invoice.customer_id).first()
    balance = credit_balance(customer=invoice.customer, currency=invoice.currency)
    use = min(balance, invoice.amount_due)
    if use <= 0:
        return ZERO
    CreditEntry.objects.create(
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        amount=-use,
        kind=CreditEntry.Kind.APPLIED,
        invoice=invoice,
        memo=f"Applied to invoice {invoice.number}",
    )
    Payment.objects.create(
        invoice=invoice,
        customer_id=invoice.customer_id,
        gateway=Payment.Gateway.CREDIT,
        amount=use,
        currency=invoice.currency,
        reference="account credit",
    )
    invoice.amount_paid += use
    invoice.save(update_fields=["amount_paid"])
    return use


def _invoice_settle(*, invoice: Invoice, actor: User | None) -> None:
    """The invoice is paid in full: mark it, and release what waited for the money."""
    invoice.mark_paid(at=timezone.now())
    invoice.save(update_fields=["state", "paid_at"])
    audit_record(
        action="billing.invoice_paid", actor=actor, target=invoice, customer=invoice.customer
    )
    if invoice.order_id is not None:
        order = Order.objects.select_for_update().get(pk=invoice.order_id)
        if order.state in (Order.State.DRAFT, Order.State.ISSUED):
            order.mark_paid(at=timezone.now())
            order.save(update_fields=["state", "paid_at"])
            order_id = order.pk
            # The order row is the outbox: if this call is lost, the daily run finds the order
            # paid and unfulfilled and calls it again.
            transaction.on_commit(lambda: order_fulfil_quietly(order_id=order_id))
    if invoice.subscription_id is not None:
        sub = Subscription.objects.select_for_update().get(pk=invoice.subscription_id)
        if (
            invoice.kind == Invoice.Kind.RENEWAL
            and invoice.period_start == sub.next_due_date
            and invoice.period_end is not None
        ):
            sub.period_start = invoice.period_start
            sub.next_due_date = invoice.period_end
            sub.save(update_fields=["period_start", "next_due_date"])
        sub_id, invoice_id = sub.pk, invoice.pk
        if invoice.kind == Invoice.Kind.PLAN_CHANGE:
            transaction.on_commit(lambda: subscription_plan_apply_quietly(invoice_id=invoice_id))
        transaction.on_commit(lambda: subscription_restore_quietly(subscription_id=sub_id))


@transaction.atomic
def payment_record(
    *,
    invoice: Invoice,
    amount: Decimal,
    currency: str,
    gateway: str,
    external_id: str = "",
    reference: str = "",
    actor: User | None = None,
) -> Payment:
    """Record money received for an invoice, once per processor id.

    Money beyond what the invoice still asks for (or for an invoice already paid by another
    route) goes to the account credit, so a double payment is never lost nor charged twice.
    Staff cannot mark an invoice paid that is already settled.
    """
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if not invoice.is_open and gateway == Payment.Gateway.MANUAL:
        raise BillingError(
            f"Invoice {invoice.number} is already {invoice.get_state_display().lower()}; "
            "nothing was recorded."
        )
    amount = check_amount(amount, currency=currency, expected_currency=invoice.currency)
    if external_id:
        existing = Payment.objects.filter(
            gateway=gateway, kind=Payment.Kind.PAYMENT, external_id=external_id
        ).first()
        if existing is not None:
            return existing
    if invoice.state == Invoice.State.DRAFT:
        raise BillingError("A draft invoice cannot be paid; issue it first.")
    payment = Payment.objects.create(
        invoice=invoice,
        customer_id=invoice.customer_id,
        gateway=gateway,
        amount=amount,
        currency=invoice.currency,
        external_id=external_id,
        reference=reference,
        created_by=actor,
    )
    applied = min(amount, invoice.amount_due) if invoice.is_open else ZERO
    if amount > applied:
        CreditEntry.objects.create(
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=amount - applied,
            kind=CreditEntry.Kind.OVERPAYMENT,
            invoice=invoice,
            memo=f"Paid beyond invoice {invoice.number}",
            created_by=actor,
        )
    if applied:
        invoice.amount_paid += applied
        invoice.save(update_fields=["amount_paid"])
    audit_record(
        action="billing.payment_recorded",
        actor=actor,
        target=invoice,
        customer=invoice.customer,
        detail={"amount": str(amount), "gateway": gateway, "external_id": external_id},
    )
    notify(
        key=f"payment-received-{payment.pk}",
        customer=invoice.customer,
        kind="payment_received",
        number=invoice.number,
        amount=amount,
        currency=invoice.currency,
        remaining=invoice.amount_due if invoice.amount_due > 0 else None,
    )
    if invoice.is_open and invoice.amount_due == 0:
        _invoice_settle(invoice=invoice, actor=actor)
    return payment


# -- orders ----------------------------------------------------------------------------------


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
            service = provisioning.service_order(
                customer=order.customer,
                plan=order.plan,
                domain=order.domain,
                actor=order.created_by,
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


# -- subscriptions -----------------------------------------------------------------------------


def _overdue_beyond_grace(*, subscription: Subscription, today: dt.date) -> bool:
    grace = BillingSettings.load().grace_days
    return Invoice.objects.filter(
        subscription=subscription,
        state__in=Invoice.OPEN_STATES,
        due_date__lte=today - dt.timedelta(days=grace),
    ).exists()


@transaction.atomic
def subscription_restore(*, subscription_id: int, today: dt.date | None = None) -> bool:
    """Lift a non-payment suspension once nothing past the grace days is unpaid.

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


# -- credit notes, credit, refunds -------------------------------------------------------------


@transaction.atomic
def credit_note_issue(
    *,
    invoice: Invoice,
    amount: Decimal,
    reason: str,
    disposition: str,
    actor: User | None = None,
    today: dt.date | None = None,
    refund: Payment | None = None,
) -> CreditNote:
    """Correct an issued invoice by a credit note of ``amount`` (gross).

    ``cancel`` reduces what is still due; ``credit`` returns paid money to the account credit;
    ``refund`` documents money given back to the card (see ``payment_refund``).
    """
    today = today or timezone.localdate()
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    amount = check_amount(amount, currency=invoice.currency, expected_currency=invoice.currency)
    if invoice.state in (Invoice.State.DRAFT, Invoice.State.VOID):
        raise BillingError(f"Invoice {invoice} is {invoice.state}; nothing to correct.")
    if not reason.strip():
        raise BillingError("Say why the credit note is issued.")
    noted = CreditNote.objects.filter(invoice=invoice).aggregate(s=Sum("total"))["s"] or ZERO
    if amount > invoice.total - noted:
        raise BillingError(
            f"Invoice {invoice.number} has only {invoice.total - noted} {invoice.currency} "
            "left to credit."
        )
    if disposition == CreditNote.Disposition.CANCEL and amount > invoice.amount_due:
        raise BillingError(f"Only {invoice.amount_due} {invoice.currency} is unpaid.")
    if disposition != CreditNote.Disposition.CANCEL:
        credited_paid = (
            CreditNote.objects.filter(invoice=invoice)
            .exclude(disposition=CreditNote.Disposition.CANCEL)
            .aggregate(s=Sum("total"))["s"]
            or ZERO
        )
        if amount > invoice.amount_paid - credited_paid:
            raise BillingError(
                f"Only {invoice.amount_paid - credited_paid} {invoice.currency} was paid and "
                "can be credited."
            )
    if invoice.reverse_charge or invoice.tax_rate == 0:
        subtotal = amount
    else:
        subtotal = money(amount * 100 / (100 + invoice.tax_rate))
    (number,) = document_numbers_allocate(prefix="CN", year=today.year)
    note = CreditNote.objects.create(
        customer_id=invoice.customer_id,
        invoice=invoice,
        number=number,
        currency=invoice.currency,
        subtotal=subtotal,
        tax_total=amount - subtotal,
        total=amount,
        disposition=disposition,
        reason=reason.strip(),
        issue_date=today,
        created_by=actor,
    )
    if disposition == CreditNote.Disposition.CANCEL:
        invoice.amount_credited += amount
        fields = ["amount_credited"]
        if invoice.amount_due == 0 and invoice.amount_paid == 0:
            invoice.void()
            fields.append("state")
        invoice.save(update_fields=fields)
        if invoice.is_open and invoice.amount_due == 0:
            _invoice_settle(invoice=invoice, actor=actor)
    elif disposition == CreditNote.Disposition.CREDIT:
        CreditEntry.objects.create(
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=amount,
            kind=CreditEntry.Kind.CREDIT_NOTE,
            invoice=invoice,
            credit_note=note,
            memo=f"Credit note {number}",
            created_by=actor,
        )
    audit_record(
        action="billing.credit_note_issued",
        actor=actor,
        target=invoice,
        customer=invoice.customer,
        detail={"number": number, "amount": str(amount), "disposition": disposition},
    )
    return note


@transaction.atomic
def credit_add(
    *, customer: Customer, amount: Decimal, currency: str, memo: str, actor: User
) -> CreditEntry:
    """Staff add account credit (a goodwill gesture); it pays the next invoices first."""
    amount = check_amount(amount, currency=currency, expected_currency=customer.currency)
    entry = CreditEntry.objects.create(
        customer=customer,
        currency=customer.currency,
        amount=amount,
        kind=CreditEntry.Kind.MANUAL,
        memo=memo,
        created_by=actor,
    )
    audit_record(
        action="billing.credit_added",
        actor=actor,
        target=entry,
        customer=customer,
        detail={"amount": str(amount)},
    )
    for invoice in Invoice.objects.filter(
        customer=customer, state__in=Invoice.OPEN_STATES
    ).order_by("due_date", "id"):
        _credit_apply(invoice=invoice)
        invoice.refresh_from_db()
        if invoice.amount_due == 0:
            _invoice_settle(invoice=invoice, actor=actor)
    return entry


def payment_refund(
    *, payment: Payment, amount: Decimal, reason: str, actor: User | None = None
) -> CreditNote:
    """Give card money back: the refund at the processor first (idempotent), then the
    refund payment and its credit note in one transaction."""
    if payment.gateway != Payment.Gateway.STRIPE or payment.kind != Payment.Kind.PAYMENT:
        raise BillingError("Only card payments are refunded to the card; use a credit note.")
    amount = check_amount(amount, currency=payment.currency, expected_currency=payment.currency)
    refunded = (
        Payment.objects.filter(kind=Payment.Kind.REFUND, reference=payment.external_id).aggregate(
            s=Sum("amount")
        )["s"]
        or ZERO
    )
    if amount > payment.amount - refunded:
        raise BillingError(f"Only {payment.amount - refunded} {payment.currency} can be refunded.")
    count = Payment.objects.filter(kind=Payment.Kind.REFUND, reference=payment.external_id).count()
    try:
        refund_id = stripe_gateway.StripeGateway().refund(
            payment_ref=payment.external_id,
            amount=amount,
            currency=payment.currency,
            idempotency_key=f"refund-{payment.pk}-{count + 1}-{amount}",
        )
    except GatewayError as exc:
        raise BillingError(f"The refund was refused: {exc.message}") from exc
    with transaction.atomic():
        Payment.objects.create(
            invoice=payment.invoice,
            customer_id=payment.customer_id,
            gateway=Payment.Gateway.STRIPE,
            kind=Payment.Kind.REFUND,
            amount=amount,
            currency=payment.currency,
            external_id=refund_id,
            reference=payment.external_id,
            created_by=actor,
        )
        return credit_note_issue(
            invoice=payment.invoice,
            amount=amount,
            reason=reason,
            disposition=CreditNote.Disposition.REFUND,
            actor=actor,
        )


# -- collecting an invoice through a gateway ---------------------------------------------------


def invoice_collect(
    *,
    invoice: Invoice,
    gateway: str,
    actor: User | None = None,
    reference: str = "",
    amount: Decimal | None = None,
) -> Payment | None:
    """Take what an invoice asks for through one of the gateways, behind one call.

    ``credit`` uses the account credit, ``manual`` records money staff received (bank
    transfer, cash; ``amount`` defaults to what is due), ``stripe`` charges the customer's saved
    card now (off-session). Returns the payment, or None when nothing could be taken.
    """
    invoice = Invoice.objects.get(pk=invoice.pk)
    if not invoice.is_open or invoice.amount_due <= 0:
        raise BillingError(
            f"Invoice {invoice.number} is already {invoice.get_state_display().lower()}; "
            "nothing was taken."
        )
    if gateway == Payment.Gateway.CREDIT:
        return _collect_from_credit(invoice=invoice, actor=actor)
    if gateway == Payment.Gateway.MANUAL:
        return payment_record(
            invoice=invoice,
            amount=invoice.amount_due if amount is None else amount,
            currency=invoice.currency,
            gateway=Payment.Gateway.MANUAL,
            reference=reference,
            actor=actor,
        )
    if gateway == Payment.Gateway.STRIPE:
        return _collect_from_card(invoice=invoice, actor=actor)
    raise BillingError(f"{gateway!r} is not a payment gateway.")


@transaction.atomic
def _collect_from_credit(*, invoice: Invoice, actor: User | None) -> Payment | None:
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    used = _credit_apply(invoice=invoice)
    if not used:
        raise BillingError("There is no account credit to use.")
    if invoice.amount_due == 0:
        _invoice_settle(invoice=invoice, actor=actor)
    return Payment.objects.filter(invoice=invoice, gateway=Payment.Gateway.CREDIT).last()


def _collect_from_card(*, invoice: Invoice, actor: User | None) -> Payment:
    method = PaymentMethod.objects.filter(customer=invoice.customer, is_default=True).first()
    if method is None:
        raise BillingError("No card is saved for this customer.")
    amount = invoice.amount_due
    try:
        result = stripe_gateway.StripeGateway().charge(
            customer_ref=stripe_customer_ref(customer=invoice.customer),
            payment_method_ref=method.external_id,
            amount=amount,
            currency=invoice.currency,
            # One key per invoice, card, amount and minute: a double click charges once, and
            # another card is a new attempt rather than a replay of the first one's answer.
            idempotency_key=(
                f"collect-{invoice.pk}-{method.external_id}-{amount}-{timezone.now():%Y%m%d%H%M}"
            ),
            metadata={"invoice_id": str(invoice.pk)},
        )
    except GatewayError as exc:
        raise BillingError(f"The card could not be charged: {exc.message}") from exc
    if not result.ok:
        raise BillingError(f"The card was not charged: {result.error}")
    return payment_record(
        invoice=invoice,
        amount=result.amount,
        currency=result.currency,
        gateway=Payment.Gateway.STRIPE,
        external_id=result.external_id,
        reference="saved card",
        actor=actor,
    )


# -- cards -------------------------------------------------------------------------------------


def stripe_customer_ref(*, customer: Customer) -> str:
    """The customer's id at Stripe, created there on first use."""
    row = GatewayCustomer.objects.filter(customer=customer).first()
    if row is not None:
        return row.stripe_customer_id
    owner = customer.memberships.filter(role="owner").select_related("user").first()
    ref = stripe_gateway.customer_create(
        email=owner.user.email if owner else "",
        name=str(customer),
        reference=str(customer.pk),
    )
    row, _ = GatewayCustomer.objects.get_or_create(
        customer=customer, defaults={"stripe_customer_id": ref}
    )
    return row.stripe_customer_id


@transaction.atomic
def payment_method_save(
    *, customer: Customer, external_id: str, card: dict[str, object] | None = None
) -> PaymentMethod:
    """Keep a saved card as the customer's default, used for their renewals from now on."""
    card = card or {}
    method, created = PaymentMethod.objects.get_or_create(
        external_id=external_id,
        defaults={
            "customer": customer,
            "brand": str(card.get("brand") or ""),
            "last4": str(card.get("last4") or ""),
            "exp_month": int(str(card.get("exp_month") or 0)) or None,
            "exp_year": int(str(card.get("exp_year") or 0)) or None,
        },
    )
    if method.customer_id != customer.pk:
        raise BillingError("This card belongs to another customer.")
    PaymentMethod.objects.filter(customer=customer).exclude(pk=method.pk).update(is_default=False)
    if not method.is_default:
        method.is_default = True
        method.save(update_fields=["is_default"])
    Subscription.objects.filter(customer=customer, state=Subscription.State.ACTIVE).update(
        payment_method=method
    )
    if created:
        audit_record(action="billing.card_saved", target=method, customer=customer)
    return method


def invoice_checkout_start(*, invoice: Invoice, success_url: str, cancel_url: str) -> str:
    """Open a hosted card payment for what an invoice still asks; returns the page's URL."""
    invoice.refresh_from_db()
    if not invoice.is_open or invoice.amount_due <= 0:
        raise BillingError(f"Invoice {invoice.number} is already paid.")
    customer_ref = stripe_customer_ref(customer=invoice.customer)
    try:
        _session_id, url = stripe_gateway.checkout_session_create(
            customer_ref=customer_ref,
            amount=invoice.amount_due,
            currency=invoice.currency,
            description=f"Invoice {invoice.number}",
            metadata={"invoice_id": str(invoice.pk), "customer_id": str(invoice.customer_id)},
            success_url=success_url,
            cancel_url=cancel_url,
            idempotency_key=f"checkout-{invoice.pk}-{uuid.uuid4()}",
        )
    except GatewayError as exc:
        raise BillingError(f"The card payment could not start: {exc.message}") from exc
    return url


def card_setup_start(*, customer: Customer, success_url: str, cancel_url: str) -> str:
    """Open a hosted page that saves a card for renewals (a SetupIntent)."""
    customer_ref = stripe_customer_ref(customer=customer)
    try:
        _session_id, url = stripe_gateway.setup_session_create(
            customer_ref=customer_ref,
            metadata={"customer_id": str(customer.pk)},
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except GatewayError as exc:
        raise BillingError(f"Saving a card could not start: {exc.message}") from exc
    return url


def seller() -> dict[str, str]:
    return settings.BILLING_SELLER
