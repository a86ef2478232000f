"""Outgoing webhooks: operators' systems hear about operations, suspensions and payments.

Events are noticed from the rows that record them (an operation reaching its end, an invoice
becoming paid), so the engine and billing need not know webhooks exist. Each occurrence is
recorded once (``WebhookEvent.key`` is unique) and delivered to every endpoint that wants it,
after the transaction that caused it commits.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.db.models.signals import post_save
from django.utils import timezone

from api.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

OPERATION_COMPLETED = "operation.completed"
OPERATION_FAILED = "operation.failed"
SERVICE_SUSPENDED = "service.suspended"
INVOICE_PAID = "invoice.paid"
EVENTS = (OPERATION_COMPLETED, OPERATION_FAILED, SERVICE_SUSPENDED, INVOICE_PAID)


def webhook_emit(*, name: str, key: str, payload: dict[str, Any]) -> WebhookEvent | None:
    """Record an event once and queue its deliveries after commit. None if already recorded."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                name=name, key=key, payload={"event": name, **payload}
            )
    except IntegrityError:
        return None
    deliveries = [
        WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=timezone.now())
        for endpoint in WebhookEndpoint.objects.filter(is_active=True)
        if endpoint.wants(name)
    ]
    created = WebhookDelivery.objects.bulk_create(deliveries)
    if created:
        ids = [d.pk for d in created]

        def enqueue() -> None:
            from api.tasks import webhook_deliver

            for delivery_id in ids:
                webhook_deliver.delay(delivery_id)

        transaction.on_commit(enqueue)
    return event


def _operation_saved(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    state = instance.state
    if state == "completed":
        name = OPERATION_COMPLETED
    elif state in ("failed", "rolled_back"):
        name = OPERATION_FAILED
    else:
        return
    service = instance.service
    payload = {
        "operation": {
            "id": instance.pk,
            "kind": instance.kind,
            "state": state,
            "reason": instance.reason,
        },
        "service": {"id": service.pk, "domain": service.domain, "state": service.state},
        "customer_id": service.customer_id,
    }
    webhook_emit(name=name, key=f"{name}:{instance.pk}", payload=payload)
    if name == OPERATION_COMPLETED and instance.kind == "suspend":
        payload = {
            "service": {
                "id": service.pk,
                "domain": service.domain,
                "reasons": list(service.suspension_reasons or []),
            },
            "operation_id": instance.pk,
            "customer_id": service.customer_id,
        }
        webhook_emit(
            name=SERVICE_SUSPENDED, key=f"{SERVICE_SUSPENDED}:{instance.pk}", payload=payload
        )


def _invoice_saved(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    if getattr(instance, "state", None) != "paid":
        return
    payload = {
        "invoice": {
            "id": instance.pk,
            "number": getattr(instance, "number", ""),
            "total": str(getattr(instance, "total", "")),
            "currency": getattr(instance, "currency", ""),
        },
        "customer_id": getattr(instance, "customer_id", None),
    }
    webhook_emit(name=INVOICE_PAID, key=f"{INVOICE_PAID}:{instance.pk}", payload=payload)


def connect() -> None:
    for label, handler in (
        ("provisioning.Operation", _operation_saved),
        ("billing.Invoice", _invoice_saved),
    ):
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        post_save.connect(handler, sender=model, dispatch_uid=f"api.webhooks.{label}")
