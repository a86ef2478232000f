"""Stripe webhook events: stored once by id, applied once, in any order.

Handlers never trust the event's copy of an object: they fetch the object's current state
from the API and act on that, so a late ``payment_failed`` after a ``succeeded`` changes
nothing, and a repeated delivery finds the event already applied.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from accounts.services import audit_record
from billing.errors import BillingError, UnknownObject
from billing.gateways import stripe as stripe_gateway
from billing.gateways.base import GatewayError
from billing.models import CreditNote, GatewayCustomer, Invoice, Payment, StripeEvent
from billing.money import from_minor_units
from billing.services import credit_note_issue, payment_method_save, payment_record

logger = logging.getLogger(__name__)


def stripe_webhook_rejected(*, reason: str, remote_addr: str) -> None:
    """A forged or stale delivery: refused, logged, and noted in the audit log."""
    logger.warning("Stripe webhook rejected from %s: %s", remote_addr, reason)
    audit_record(
        action="billing.webhook_rejected",
        actor_label="stripe webhook",
        detail={"reason": reason[:300], "remote_addr": remote_addr},
    )


@transaction.atomic
def stripe_event_apply(*, event: dict[str, Any]) -> StripeEvent:
    """Store the event (once per id) and apply it unless an earlier delivery already did."""
    event_id = str(event.get("id") or "")
    if not event_id.startswith("evt_"):
        raise BillingError("The event has no Stripe event id.")
    StripeEvent.objects.bulk_create(
        [
            StripeEvent(
                event_id=event_id,
                type=str(event.get("type", "")),
                created=dt.datetime.fromtimestamp(int(event.get("created") or 0), tz=dt.UTC),
                payload=event,
                deliveries=0,
            )
        ],
        ignore_conflicts=True,
    )
    # The row lock serializes concurrent deliveries of the same event.
    stored = StripeEvent.objects.select_for_update().get(event_id=event_id)
    stored.deliveries += 1
    if stored.status != StripeEvent.Status.RECEIVED:
        stored.save(update_fields=["deliveries"])
        return stored
    handler = HANDLERS.get(stored.type)
    try:
        with transaction.atomic():
            result = handler(event["data"]["object"]) if handler else "not handled"
        stored.status = StripeEvent.Status.PROCESSED if handler else StripeEvent.Status.IGNORED
        stored.result = result
    except GatewayError as exc:
        if not exc.permanent:
            # Stripe could not be asked: refuse the delivery so that Stripe sends it again.
            raise
        stored.status = StripeEvent.Status.FAILED
        stored.result = exc.message
    except BillingError as exc:
        # Kept with the reason, for staff to look at; Stripe is told it arrived.
        stored.status = StripeEvent.Status.FAILED
        stored.result = "; ".join(exc.messages)
    if stored.status == StripeEvent.Status.FAILED:
        logger.warning("Stripe event %s (%s) not applied: %s", event_id, stored.type, stored.result)
    stored.processed_at = timezone.now()
    stored.save(update_fields=["deliveries", "status", "result", "processed_at"])
    return stored


def _invoice_from(metadata: dict[str, Any], what: str) -> Invoice:
    raw = str((metadata or {}).get("invoice_id") or "")
    invoice = Invoice.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
    if invoice is None:
        raise UnknownObject(f"{what} names invoice {raw or '(none)'}, which does not exist.")
    return invoice


def _customer_from(stripe_customer: str | None, what: str) -> Customer:
    row = GatewayCustomer.objects.filter(stripe_customer_id=stripe_customer or "").first()
    if row is None:
        raise UnknownObject(f"{what} is for Stripe customer {stripe_customer}, unknown here.")
    return row.customer


def _intent_apply(intent: dict[str, Any]) -> str:
    """Record a succeeded PaymentIntent's money against its invoice (once per intent)."""
    if intent.get("status") != "succeeded":
        return f"payment {intent['id']} is {intent.get('status')}: nothing recorded"
    invoice = _invoice_from(intent.get("metadata", {}), f"Payment {intent['id']}")
    if intent.get("setup_future_usage") and intent.get("payment_method"):
        _card_keep(customer=invoice.customer, method_id=str(intent["payment_method"]))
    payment = payment_record(
        invoice=invoice,
        amount=from_minor_units(
            int(intent.get("amount_received") or 0),
            str(intent.get("currency") or invoice.currency).upper(),
        ),
        currency=str(intent.get("currency", "")).upper(),
        gateway=Payment.Gateway.STRIPE,
        external_id=str(intent["id"]),
        reference="card payment",
    )
    return f"payment {payment.pk} on invoice {invoice.number}"


def _card_keep(*, customer: Customer, method_id: str) -> None:
    method = stripe_gateway.payment_method_retrieve(method_id)
    payment_method_save(customer=customer, external_id=method_id, card=method.get("card") or {})


def on_payment_intent(obj: dict[str, Any]) -> str:
    return _intent_apply(stripe_gateway.payment_intent_retrieve(str(obj["id"])))


def on_checkout_completed(obj: dict[str, Any]) -> str:
    session = stripe_gateway.checkout_session_retrieve(str(obj["id"]))
    if session.get("mode") == "setup":
        intent = stripe_gateway.setup_intent_retrieve(str(session.get("setup_intent")))
        return on_setup_intent(intent)
    if not session.get("payment_intent"):
        return f"session {session['id']} has no payment yet"
    return _intent_apply(stripe_gateway.payment_intent_retrieve(str(session["payment_intent"])))


def on_setup_intent(obj: dict[str, Any]) -> str:
    intent = stripe_gateway.setup_intent_retrieve(str(obj["id"]))
    if intent.get("status") != "succeeded" or not intent.get("payment_method"):
        return f"setup {intent['id']} is {intent.get('status')}"
    customer = _customer_from(intent.get("customer"), f"Card setup {intent['id']}")
    _card_keep(customer=customer, method_id=str(intent["payment_method"]))
    return f"card saved for customer {customer.pk}"


def on_charge_refunded(obj: dict[str, Any]) -> str:
    """Refunds made at Stripe (its dashboard) appear here as money given back."""
    intent_id = str(obj.get("payment_intent") or "")
    payment = Payment.objects.filter(
        gateway=Payment.Gateway.STRIPE, kind=Payment.Kind.PAYMENT, external_id=intent_id
    ).first()
    if payment is None:
        raise UnknownObject(f"A refund of payment {intent_id}, which is not recorded here.")
    refunded_there = from_minor_units(int(obj.get("amount_refunded") or 0), payment.currency)
    refunds = Payment.objects.filter(kind=Payment.Kind.REFUND, reference=intent_id)
    known = sum((p.amount for p in refunds), from_minor_units(0, payment.currency))
    if refunded_there <= known:
        return "refund already recorded"
    Payment.objects.create(
        invoice=payment.invoice,
        customer_id=payment.customer_id,
        gateway=Payment.Gateway.STRIPE,
        kind=Payment.Kind.REFUND,
        amount=refunded_there - known,
        currency=payment.currency,
        external_id=f"{intent_id}:refunded:{int(refunded_there * 100)}",
        reference=intent_id,
    )
    # The invoice is corrected by a credit note, as for refunds made here.
    credit_note_issue(
        invoice=payment.invoice,
        amount=refunded_there - known,
        reason="Refunded at Stripe",
        disposition=CreditNote.Disposition.REFUND,
    )
    audit_record(
        action="billing.refund_recorded",
        actor_label="stripe webhook",
        target=payment.invoice,
        customer=payment.invoice.customer,
        detail={"amount": str(refunded_there - known)},
    )
    return f"refund of {refunded_there - known} recorded"


HANDLERS = {
    "payment_intent.succeeded": on_payment_intent,
    "payment_intent.payment_failed": on_payment_intent,
    "checkout.session.completed": on_checkout_completed,
    "setup_intent.succeeded": on_setup_intent,
    "charge.refunded": on_charge_refunded,
}
