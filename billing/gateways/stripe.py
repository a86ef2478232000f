"""Stripe, through its official SDK: the only module that imports ``stripe``.

``STRIPE_API_BASE`` points the SDK at another address (the local stand-in in tests and the
demo); empty means Stripe itself. Amounts cross this boundary as ``Decimal`` and leave it in
the currency's minor units (``billing.money.to_minor_units``: cents, yen, fils).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings

from billing.gateways.base import ChargeResult, GatewayError
from billing.money import from_minor_units, to_minor_units

DEFAULT_API_BASE = "https://api.stripe.com"
log = logging.getLogger(__name__)


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong or too old."""


def _configure() -> None:
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE or DEFAULT_API_BASE
    # Every write carries an idempotency key, so the SDK may retry network failures safely.
    stripe.max_network_retries = 2


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# What a customer reads for the processor's answers, by Stripe's error code; the processor's
# own text (which may name its objects, "No such PaymentMethod: 'pm_...'") goes to the log.
_CUSTOMER_WORDS = {
    "resource_missing": (
        "Your saved card is no longer on file with our card processor. Add the card again "
        "or pay with another card."
    ),
    "card_declined": "Your card was declined. Try another card, or ask your bank why.",
    "expired_card": "Your card has expired. Add a card that is valid.",
    "incorrect_cvc": "The card's security code was not accepted. Check it and try again.",
    "insufficient_funds": "Your card has insufficient funds. Try another card.",
    "processing_error": "The card processor had a problem. Please try again in a few minutes.",
    "authentication_required": (
        "Your bank asks you to confirm this payment: pay the invoice by card from the panel."
    ),
}


def customer_message(exc: stripe.StripeError) -> str:
    """A sentence a customer can act on, never the processor's raw text."""
    code = str(getattr(exc, "code", "") or "")
    if code in _CUSTOMER_WORDS:
        return _CUSTOMER_WORDS[code]
    if isinstance(exc, stripe.CardError):
        return _CUSTOMER_WORDS["card_declined"]
    if "No such" in str(exc):
        return _CUSTOMER_WORDS["resource_missing"]
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return "The card processor could not be reached. Please try again in a few minutes."
    return (
        "The card processor refused the request. Please try again, or open a ticket if it "
        "keeps happening."
    )


def _error(exc: stripe.StripeError) -> GatewayError:
    # Card declines and invalid requests will not improve by retrying; outages might.
    permanent = isinstance(exc, stripe.CardError | stripe.InvalidRequestError)
    log.warning("card processor error: %s", exc)
    return GatewayError(customer_message(exc), permanent=permanent)


def construct_event(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Check the ``Stripe-Signature`` header (300 s tolerance) and parse the event."""
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=300
        )
    except stripe.SignatureVerificationError as exc:
        raise SignatureError(str(exc)) from None
    except ValueError as exc:
        raise SignatureError(f"not a JSON event: {exc}") from None
    return _plain(event)


def customer_create(*, email: str, name: str, reference: str) -> str:
    _configure()
    try:
        obj = stripe.Customer.create(
            email=email,
            name=name,
            metadata={"hostwright_customer": reference},
            idempotency_key=f"customer-{reference}",
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return str(obj.id)


def checkout_session_create(
    *,
    customer_ref: str,
    amount: Decimal,
    currency: str,
    description: str,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
) -> tuple[str, str]:
    """A hosted payment page for one amount; the card is kept for renewals. (id, url)."""
    _configure()
    try:
        session = stripe.checkout.Session.create(
            mode="payment",
            customer=customer_ref,
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": to_minor_units(amount, currency),
                        "product_data": {"name": description},
                    },
                }
            ],
            payment_intent_data={"setup_future_usage": "off_session", "metadata": metadata},
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
            idempotency_key=idempotency_key,
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return str(session.id), str(session.url)


def setup_session_create(
    *, customer_ref: str, metadata: dict[str, str], success_url: str, cancel_url: str
) -> tuple[str, str]:
    """A hosted page that saves a card (a SetupIntent) without charging it. (id, url)."""
    _configure()
    try:
        session = stripe.checkout.Session.create(
            mode="setup",
            customer=customer_ref,
            currency="eur",
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except stripe.StripeError as exc:
        raise _error(exc) from exc
    return str(session.id), str(session.url)


def _retrieve(resource: Any, object_id: str) -> dict[str, Any]:
    """Read one object back from Stripe (webhooks are applied from what Stripe says now)."""
    _configure()
    try:
        return _plain(resource.retrieve(object_id))
    except stripe.StripeError as exc:
        raise _error(exc) from exc


def checkout_session_retrieve(session_id: str) -> dict[str, Any]:
    return _retrieve(stripe.checkout.Session, session_id)


def payment_intent_retrieve(intent_id: str) -> dict[str, Any]:
    return _retrieve(stripe.PaymentIntent, intent_id)


def setup_intent_retrieve(intent_id: str) -> dict[str, Any]:
    return _retrieve(stripe.SetupIntent, intent_id)


def payment_method_retrieve(method_id: str) -> dict[str, Any]:
    return _retrieve(stripe.PaymentMethod, method_id)


class StripeGateway:
    """Off-session charges of saved cards and refunds."""

    name = "stripe"

    def charge(
        self,
        *,
        customer_ref: str,
        payment_method_ref: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ChargeResult:
        _configure()
        try:
            intent = stripe.PaymentIntent.create(
                amount=to_minor_units(amount, currency),
                currency=currency.lower(),
                customer=customer_ref,
                payment_method=payment_method_ref,
                off_session=True,
                confirm=True,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        except stripe.CardError as exc:
            # A decline still names the intent it created; keep it for the record.
            intent_obj = getattr(exc, "error", None)
            pi = getattr(intent_obj, "payment_intent", None) if intent_obj else None
            return ChargeResult(
                ok=False,
                external_id=str(pi["id"]) if pi else "",
                amount=amount,
                currency=currency,
                error=customer_message(exc),
            )
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        ok = intent.status == "succeeded"
        return ChargeResult(
            ok=ok,
            external_id=str(intent.id),
            amount=from_minor_units(
                intent.amount_received if ok else intent.amount, str(intent.currency)
            ),
            currency=str(intent.currency).upper(),
            error="" if ok else f"the payment is {intent.status}",
            payment_method_id=payment_method_ref,
        )

    def refund(
        self, *, payment_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> str:
        _configure()
        try:
            refund = stripe.Refund.create(
                payment_intent=payment_ref,
                amount=to_minor_units(amount, currency),
                idempotency_key=idempotency_key,
            )
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        if refund.status not in ("succeeded", "pending"):
            raise GatewayError(f"the refund is {refund.status}", permanent=True)
        return str(refund.id)
