"""Stripe, through its official SDK: the only module that imports ``stripe``.

``STRIPE_API_BASE`` points the SDK at another address (the local stand-in in tests and the
demo); empty means Stripe itself. Amounts cross this boundary as ``Decimal`` and leave it as
cents.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings

from billing.gateways.base import ChargeResult, GatewayError
from billing.money import from_minor_units, to_minor_units

DEFAULT_API_BASE = "https://api.stripe.com"


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong or too old."""


def _configure() -> None:
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE or DEFAULT_API_BASE
    # Every write carries an idempotency key, so the SDK may retry network failures safely.
    stripe.max_network_retries = 2


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _error(exc: stripe.StripeError) -> GatewayError:
    # Card declines and invalid requests will not improve by retrying; outages might.
    permanent = isinstance(exc, stripe.CardError | stripe.InvalidRequestError)
    message = getattr(exc, "user_message", None) or str(exc) or exc.__class__.__name__
    return GatewayError(message, permanent=permanent)


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
                        "unit_amount": to_minor_units(amount),
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
                amount=to_minor_units(amount),
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
                error=getattr(exc, "user_message", None) or str(exc),
            )
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        ok = intent.status == "succeeded"
        return ChargeResult(
            ok=ok,
            external_id=str(intent.id),
            amount=from_minor_units(intent.amount_received if ok else intent.amount),
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
                amount=to_minor_units(amount),
                idempotency_key=idempotency_key,
            )
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        if refund.status not in ("succeeded", "pending"):
            raise GatewayError(f"the refund is {refund.status}", permanent=True)
        return str(refund.id)
