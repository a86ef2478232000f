"""Plan change: the prorated price is shown before confirming, and is what billing charges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services
from billing.models import CreditEntry, CreditNote, Invoice, Price, Subscription, TaxRate
from tests.factories import PlanFactory
from tests.panel.conftest import make_service

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(customer, plan, node):
    Price.objects.create(plan=plan, cycle="monthly", currency="EUR", amount=Decimal("10.00"))
    bigger = PlanFactory.create(name="Business", slug="business", disk_mb=5000)
    Price.objects.create(plan=bigger, cycle="monthly", currency="EUR", amount=Decimal("31.00"))
    smaller = PlanFactory.create(name="Mini", slug="mini", disk_mb=500)
    Price.objects.create(plan=smaller, cycle="monthly", currency="EUR", amount=Decimal("4.00"))
    TaxRate.objects.create(country="DE", rate=Decimal("19.00"), name="USt 19%")
    service = make_service(customer, plan, node, domain="plans.example.com")
    today = timezone.localdate()
    sub = Subscription.objects.create(
        service=service,
        customer=customer,
        plan=plan,
        cycle="monthly",
        currency="EUR",
        amount=Decimal("10.00"),
        period_start=today - dt.timedelta(days=10),
        next_due_date=today + dt.timedelta(days=20),
    )
    return service, sub, bigger, smaller


def test_upgrade_price_shown_is_the_invoice_total(client, owner, subscribed):
    service, _sub, bigger, _smaller = subscribed
    client.force_login(owner)
    url = reverse("panel:plan_change", args=[service.pk])
    # given the page: Business for 20 of 30 days (20.67) minus 20 unused days of 10.00 (6.67)
    page = client.get(url).content.decode()
    assert "Business for 20 of 30 days" in page
    shown = Decimal(page.split('data-due="')[1].split('"')[0])
    assert shown == Decimal("16.66")  # 14.00 net + 19% tax
    # when the owner confirms
    response = client.post(url, {"plan": bigger.pk})
    # then billing issues an invoice for exactly what was shown, and the page goes to it
    invoice = Invoice.objects.get(kind=Invoice.Kind.PLAN_CHANGE)
    assert invoice.total == shown
    assert response["Location"] == reverse("billing:invoice", args=[invoice.pk])


def test_downgrade_shows_the_credit(client, owner, subscribed):
    service, sub, _bigger, smaller = subscribed
    # given the term's invoice, paid (10.00 + 19% tax)
    term = services.invoice_create(
        customer=sub.customer,
        kind=Invoice.Kind.RENEWAL,
        lines=[services.LineSpec("Starter", Decimal("10.00"))],
        due_date=sub.period_start,
        subscription=sub,
        period_start=sub.period_start,
        period_end=sub.next_due_date,
    )
    services.payment_record(invoice=term, amount=term.total, currency="EUR", gateway="manual")
    client.force_login(owner)
    url = reverse("panel:plan_change", args=[service.pk])
    page = client.get(url).content.decode()
    credit = Decimal(page.split('data-credit="')[1].split('"')[0])
    client.post(url, {"plan": smaller.pk})
    # then 4.00 net comes back with its tax, through a credit note on that invoice
    assert CreditEntry.objects.get(kind="credit_note").amount == credit == Decimal("4.76")
    note = CreditNote.objects.get(invoice=term)
    assert (note.subtotal, note.tax_total, note.total) == (
        Decimal("4.00"),
        Decimal("0.76"),
        Decimal("4.76"),
    )


def test_teammates_cannot_change_the_plan(client, teammate, subscribed):
    service = subscribed[0]
    client.force_login(teammate)
    assert client.get(reverse("panel:plan_change", args=[service.pk])).status_code == 404


def test_unknown_plan_is_refused_on_the_page(client, owner, subscribed):
    service = subscribed[0]
    client.force_login(owner)
    response = client.post(reverse("panel:plan_change", args=[service.pk]), {"plan": "999999"})
    assert response.status_code == 400 and "Choose one of the plans" in response.content.decode()
    assert not Invoice.objects.exists()
