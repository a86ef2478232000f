"""The Celery side: the daily run is on the beat schedule and its task runs once per day."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.conf import settings

from billing.models import BillingRun, StripeEvent
from billing.tasks import daily_run
from billing.webhooks import stripe_event_apply
from tests.billing.conftest import active_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def test_daily_run_is_scheduled_on_beat():
    entry = settings.CELERY_BEAT_SCHEDULE["billing-daily-run"]
    assert entry["task"] == "billing.daily_run"


def test_task_runs_the_day_once(customer, plan, tax_rates, node, billing_settings):
    active_subscription(customer=customer, plan=plan, due=dt.date(2026, 5, 1))
    first = daily_run.apply(args=("2026-04-17",)).get()
    second = daily_run.apply(args=("2026-04-17",)).get()
    assert first["renewal_invoices"] == 1
    assert second == first
    assert BillingRun.objects.get().attempts == 1


def test_the_same_event_delivered_concurrently_is_stored_once():
    # given one event arriving on eight connections at the same moment
    event = {
        "id": "evt_concurrent",
        "type": "customer.created",
        "created": 1_790_000_000,
        "data": {"object": {"id": "cus_x"}},
    }
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def receive() -> None:
        from django.db import connection

        try:
            barrier.wait()
            stripe_event_apply(event=event)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then one row counts eight deliveries, and the type nobody handles is marked ignored
    assert failures == []
    stored = StripeEvent.objects.get(event_id="evt_concurrent")
    assert stored.deliveries == 8 and stored.status == StripeEvent.Status.IGNORED


def test_orders_sweep_hands_over_a_paid_order_once(customer, plan, tax_rates, billing_settings):
    from billing import services
    from billing.models import Invoice, Order
    from billing.tasks import orders_sweep
    from provisioning.models import Node, Service

    # given an order paid while no node had room (the hand-over after payment was refused)
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="later.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    services.payment_record(invoice=invoice, amount=invoice.total, currency="EUR", gateway="manual")
    order.refresh_from_db()
    assert order.state == Order.State.PAID and "No hosting server" in order.fulfil_error
    # when a node is added and the sweep runs twice
    Node.objects.create(name="web2", address="127.0.0.1", roles=["web"])
    assert orders_sweep.apply().get() == 1
    assert orders_sweep.apply().get() == 0
    # then the service was ordered once
    assert Service.objects.filter(domain="later.example.com").count() == 1
    assert settings.CELERY_BEAT_SCHEDULE["billing-orders-sweep"]["task"] == "billing.orders_sweep"
