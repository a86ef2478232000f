"""Invoices: gapless numbers, issuing, account credit, payments, credit notes, refunds,
and collecting through a gateway."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.gateways import stripe as stripe_gateway
from billing.gateways.base import GatewayError
from billing.models import (
    ZERO,
    CreditEntry,
    CreditNote,
    DocumentSeries,
    Invoice,
    InvoiceLine,
    Order,
    Payment,
    PaymentMethod,
    Plan,
    Subscription,
)
from billing.money import check_amount, money, split_gross
from billing.notifications import notify
from billing.selectors import (
    LineSpec,
    credit_balance,
)
from billing.taxes import TaxDecision, tax_decide

logger = logging.getLogger(__name__)


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


def line_amount(line: LineSpec, currency: str) -> Decimal:
    """A line's net amount: its unit price times its quantity, rounded once."""
    if line.quantity < 0:
        raise BillingError(f"{line.description}: a quantity cannot be negative.")
    return money(money(line.amount, currency) * line.quantity, currency)


def invoice_totals(
    lines: Sequence[LineSpec], tax: TaxDecision, *, currency: str
) -> tuple[Decimal, Decimal]:
    """(subtotal, tax): the lines' amounts (quantities included) rounded each to the
    currency, and the tax computed once on the subtotal, so the totals always add up."""
    subtotal = money(sum((line_amount(line, currency) for line in lines), ZERO), currency)
    if subtotal < 0:
        raise BillingError("An invoice cannot total less than zero; use account credit.")
    return subtotal, money(subtotal * tax.rate / 100, currency)


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
    replaces: Invoice | None = None,
) -> Invoice:
    """Issue an invoice with its number, apply account credit to it, and mail it."""
    today = today or timezone.localdate()
    if not lines:
        raise BillingError("An invoice needs at least one line.")
    tax = tax_decide(customer=customer)
    subtotal, tax_total = invoice_totals(lines, tax, currency=customer.currency)
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
        tax_note=tax.note[:300],
        tax_check=tax.check,
        bill_to=bill_to(customer),
        issue_date=today,
        due_date=due_date,
        order=order,
        subscription=subscription,
        period_start=period_start,
        period_end=period_end,
        target_plan=target_plan,
        replaces=replaces,
    )
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=i,
                description=line.description,
                quantity=line.quantity,
                unit_amount=money(line.amount, customer.currency),
                amount=line_amount(line, customer.currency),
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
    # Orders and subscriptions build on invoices; they are imported here, not at the top.
    from billing.services.orders import order_fulfil_quietly
    from billing.services.subscriptions import (
        subscription_plan_apply_quietly,
        subscription_restore_quietly,
    )

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
    subtotal, _ = split_gross(
        amount,
        rate=ZERO if invoice.reverse_charge else invoice.tax_rate,
        currency=invoice.currency,
    )
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
    from billing.services.cards import stripe_customer_ref

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
