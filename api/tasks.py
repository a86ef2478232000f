from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from api.models import WebhookDelivery
from api.signing import sign_webhook

MAX_ATTEMPTS = 8


class DeliveryFailed(Exception):
    """The endpoint did not accept the delivery; worth trying again later."""


@shared_task(
    name="api.webhook_deliver",
    bind=True,
    autoretry_for=(DeliveryFailed,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=MAX_ATTEMPTS - 1,
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,
)
def webhook_deliver(self: object, delivery_id: int) -> str:
    """POST one event to one endpoint, signed; safe to run twice (a delivered one is skipped)."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("event", "endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return "busy-or-gone"
        if delivery.status == WebhookDelivery.Status.DELIVERED:
            return "already-delivered"
        body = json.dumps(
            {"id": delivery.event.pk, "created": delivery.event.created_at.isoformat(),
             **delivery.event.payload},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        timestamp = int(time.time())
        # Endpoint URLs are http(s) only (URLField), so urlopen cannot be sent to file: etc.
        request = urllib.request.Request(  # noqa: S310
            delivery.endpoint.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Hostwright-Webhooks/1",
                "X-Hostwright-Event": delivery.event.name,
                "X-Hostwright-Delivery": str(delivery.pk),
                "X-Hostwright-Webhook-Signature": sign_webhook(
                    delivery.endpoint.secret, timestamp=timestamp, body=body
                ),
            },
        )
        delivery.attempts += 1
        delivery.last_attempt_at = timezone.now()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                delivery.response_status = response.status
                delivery.response_body = response.read(2000).decode("utf-8", "replace")
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.error = ""
            delivery.next_attempt_at = None
        except urllib.error.HTTPError as exc:
            delivery.response_status = exc.code
            delivery.response_body = exc.read(2000).decode("utf-8", "replace")
            delivery.error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            delivery.response_status = None
            delivery.error = f"{type(exc).__name__}: {exc}"[:500]
        if delivery.status != WebhookDelivery.Status.DELIVERED:
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = WebhookDelivery.Status.FAILED
                delivery.next_attempt_at = None
            else:
                delivery.next_attempt_at = timezone.now() + timedelta(
                    seconds=min(3600, 30 * 2 ** (delivery.attempts - 1))
                )
        delivery.save()
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise DeliveryFailed(delivery.error)
    return delivery.status


@shared_task(name="api.nonces_purge", time_limit=120, soft_time_limit=100)
def nonces_purge() -> int:
    from api.services import api_nonces_purge

    return api_nonces_purge()
