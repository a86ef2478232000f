"""Outgoing webhooks: signed, recorded once, retried, replayable."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from api.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from api.tasks import DeliveryFailed, webhook_deliver
from api.webhooks import webhook_emit

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """An operator's endpoint on loopback that answers with a chosen status."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"thanks")

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_an_event_is_delivered_signed_and_only_once(receiver: Receiver) -> None:
    # Given an operator endpoint that wants invoice events only
    endpoint = WebhookEndpoint.objects.create(
        name="ops", url=receiver.url, secret="s3cret", events=["invoice.paid"]
    )
    # When the same occurrence is emitted twice, and another event kind once
    event = webhook_emit(name="invoice.paid", key="invoice.paid:7", payload={"invoice": {"id": 7}})
    assert webhook_emit(name="invoice.paid", key="invoice.paid:7", payload={}) is None
    webhook_emit(name="operation.completed", key="operation.completed:1", payload={})
    # Then one delivery exists, for the wanted event
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == event
    assert delivery.endpoint == endpoint
    # And delivering it sends a body the receiver can verify with the shared secret
    assert webhook_deliver.run(delivery.pk) == "delivered"
    headers, body = receiver.received[0]
    timestamp, signature = (part.split("=", 1)[1] for part in
                            headers["X-Hostwright-Webhook-Signature"].split(","))  # fmt: skip
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert json.loads(body)["event"] == "invoice.paid"
    assert json.loads(body)["invoice"] == {"id": 7}
    # And running the task again sends nothing more
    assert webhook_deliver.run(delivery.pk) == "already-delivered"
    assert len(receiver.received) == 1


def test_a_failing_endpoint_is_retried_with_backoff_and_can_be_replayed(
    receiver: Receiver,
) -> None:
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret="k")
    webhook_emit(name="operation.failed", key="operation.failed:9", payload={})
    delivery = WebhookDelivery.objects.get()
    # When the endpoint answers 500
    receiver.status = 500
    with pytest.raises(DeliveryFailed):
        webhook_deliver.run(delivery.pk)
    delivery.refresh_from_db()
    # Then the attempt is logged and another is scheduled
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert delivery.response_status == 500
    assert delivery.next_attempt_at is not None
    # When it recovers, the next attempt delivers
    receiver.status = 204
    assert webhook_deliver.run(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert WebhookEvent.objects.count() == 1


def test_an_unreachable_endpoint_gives_up_after_the_last_attempt() -> None:
    WebhookEndpoint.objects.create(name="gone", url="http://127.0.0.1:9/", secret="k")
    webhook_emit(name="operation.failed", key="operation.failed:10", payload={})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=7)
    assert webhook_deliver.run(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert "ConnectionRefused" in delivery.error or "refused" in delivery.error.lower()
