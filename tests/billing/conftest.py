"""Billing fixtures: a catalog with prices and tax rates, the Stripe stand-in, signed events."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
import stripe as stripe_sdk
from django.db import transaction

from billing.models import (
    Addon,
    AddonPrice,
    BillingSettings,
    Plan,
    Price,
    Subscription,
    TaxRate,
)
from provisioning.models import Node, Operation, Service
from tests.factories import PlanFactory

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_test_billing"


def _load_standin():
    spec = importlib.util.spec_from_file_location(
        "stripe_standin", ROOT / "deploy" / "dev" / "stripe_standin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stripe_standin"] = module
    spec.loader.exec_module(module)
    return module


standin_module = _load_standin()


def _load_vies_standin():
    spec = importlib.util.spec_from_file_location(
        "vies_standin", ROOT / "deploy" / "dev" / "vies_standin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vies_standin"] = module
    spec.loader.exec_module(module)
    return module


vies_module = _load_vies_standin()


@pytest.fixture(scope="session")
def vies_server():
    server, state = vies_module.serve()
    yield state
    server.shutdown()


@pytest.fixture
def vies_standin(vies_server, settings):
    """The VIES stand-in, every member state answering, with Django pointed at it."""
    settings.VIES_API_BASE = vies_server.base_url
    settings.BILLING_SELLER = {**settings.BILLING_SELLER, "tax_id": "DE136695976"}
    vies_server.unavailable.clear()
    yield vies_server
    vies_server.unavailable.clear()


@pytest.fixture(scope="session")
def stripe_server():
    server, state = standin_module.serve(webhook_secret=WEBHOOK_SECRET)
    yield state
    server.shutdown()


@pytest.fixture
def stripe_standin(stripe_server, settings):
    """The stand-in, with Django's settings pointing the SDK at it."""
    settings.STRIPE_API_BASE = stripe_server.base_url
    settings.STRIPE_SECRET_KEY = "sk_test_billing"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield stripe_server
    stripe_sdk.api_base = "https://api.stripe.com"


def sign(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return standin_module.sign(payload, secret, timestamp)


def deliver(client, event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    """POST an event to our webhook endpoint, signed the way Stripe signs."""
    payload = json.dumps(event)
    return client.post(
        "/billing/webhooks/stripe/",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload, secret=secret, timestamp=timestamp),
    )


def events_of(state, *types: str) -> list[dict]:
    """The stand-in's events, oldest first, optionally only of these types."""
    return [e for e in state.events if not types or e["type"] in types]


@pytest.fixture
def tax_rates(db):
    TaxRate.objects.create(country="DE", name="USt", rate=Decimal("19.00"), in_eu=True)
    TaxRate.objects.create(country="FR", name="TVA", rate=Decimal("20.00"), in_eu=True)
    TaxRate.objects.create(country="GB", name="VAT", rate=Decimal("20.00"), in_eu=False)


@pytest.fixture
def plan(db):
    plan = cast(Plan, PlanFactory(name="Starter", slug="starter"))
    Price.objects.create(plan=plan, cycle="monthly", currency="EUR", amount=Decimal("10.00"))
    Price.objects.create(plan=plan, cycle="annual", currency="EUR", amount=Decimal("100.00"))
    Price.objects.create(plan=plan, cycle="monthly", currency="USD", amount=Decimal("11.00"))
    return plan


@pytest.fixture
def big_plan(db):
    plan = cast(Plan, PlanFactory(name="Business", slug="business"))
    Price.objects.create(plan=plan, cycle="monthly", currency="EUR", amount=Decimal("30.00"))
    Price.objects.create(plan=plan, cycle="annual", currency="EUR", amount=Decimal("300.00"))
    return plan


@pytest.fixture
def storage_addon(db):
    addon = Addon.objects.create(
        name="Extra storage 10 GB", slug="storage-10", kind="extra_storage", extra_disk_mb=10_000
    )
    AddonPrice.objects.create(addon=addon, cycle="monthly", currency="EUR", amount=Decimal("2.50"))
    AddonPrice.objects.create(addon=addon, cycle="annual", currency="EUR", amount=Decimal("25.00"))
    return addon


@pytest.fixture
def node(db):
    """A node row so that placement works; no worker runs, so nothing reaches it."""
    return Node.objects.create(name="web1", address="127.0.0.1", roles=["web", "db"])


@pytest.fixture
def billing_settings(db):
    config = BillingSettings.load()
    config.renewal_days_before = 14
    config.reminder_days_before = "7,1"
    config.reminder_days_after = "1,5"
    config.charge_retry_days = "0,2,4"
    config.grace_days = 7
    config.terminate_after_days = 30
    config.save()
    return config


def engine_finishes(service: Service, state: str | None = None) -> Service:
    """Stand in for the provisioning worker: its queued operations end, the service moves."""
    Operation.objects.filter(service=service, state__in=Operation.RUNNING_STATES).update(
        state="completed"
    )
    if state:
        Service.objects.filter(pk=service.pk).update(state=state)
    return Service.objects.get(pk=service.pk)


def active_subscription(
    *, customer, plan, due: dt.date, domain: str = "shop.example.com", amount=None, method=None
) -> Subscription:
    """A service the engine provisioned, billed monthly, next due on ``due``."""
    from provisioning import services as provisioning

    with transaction.atomic():
        service = provisioning.service_order(customer=customer, plan=plan, domain=domain)
    engine_finishes(service, "active")
    start = due - dt.timedelta(days=30)
    return Subscription.objects.create(
        service=service,
        customer=customer,
        plan=plan,
        cycle="monthly",
        currency=customer.currency,
        amount=amount if amount is not None else Decimal("10.00"),
        period_start=start,
        next_due_date=due,
        payment_method=method,
    )


def pytest_collection_modifyitems(config, items):
    """Billing's worker tests run last: once the session's Celery worker is up it consumes the
    provisioning tasks that other tests queue, racing their database flushes."""
    late = [
        item
        for item in items
        if item.get_closest_marker("worker") and "tests/billing/" in str(item.path)
    ]
    for item in late:
        items.remove(item)
        items.append(item)
