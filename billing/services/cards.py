"""Cards at Stripe: the customer's id there, saved cards, hosted payment and card-saving pages."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from accounts.models import Customer
from accounts.services import audit_record
from billing.errors import BillingError
from billing.gateways import stripe as stripe_gateway
from billing.gateways.base import GatewayError
from billing.models import (
    GatewayCustomer,
    Invoice,
    PaymentMethod,
    Subscription,
)

logger = logging.getLogger(__name__)


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
