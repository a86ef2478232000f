"""Billing in the admin: staff see invoices, orders, runs and events, and mark payments."""

from __future__ import annotations

from decimal import Decimal

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group

from accounts.roles import BILLING
from billing import services
from billing.models import Invoice
from tests.factories import UserFactory
from tests.staff import sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(db):
    user = UserFactory.create(email="bea.billing@staff.example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=BILLING))
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    return user


@pytest.fixture
def invoice(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="admin.example.com"
    )
    return Invoice.objects.get(order=order)


@pytest.mark.parametrize(
    "page",
    [
        "invoice",
        "order",
        "subscription",
        "payment",
        "creditnote",
        "creditentry",
        "billingrun",
        "stripeevent",
        "billingsettings",
        "plan",
        "coupon",
        "taxrate",
    ],
)
def test_billing_staff_see_the_billing_pages(client, clerk, invoice, page):
    sign_in_staff(client, clerk)
    assert client.get(f"/admin/billing/{page}/").status_code == 200


def test_invoice_page_is_read_only_and_shows_lines(client, clerk, invoice):
    sign_in_staff(client, clerk)
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert invoice.number in page and "Starter" in page
    assert 'name="total"' not in page


def test_staff_mark_an_invoice_paid_once(client, clerk, invoice):
    sign_in_staff(client, clerk)
    data = {"action": "mark_paid_manually", "_selected_action": [invoice.pk]}
    client.post("/admin/billing/invoice/", data)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    assert invoice.payments.get().amount == Decimal("11.90")
    response = client.post("/admin/billing/invoice/", data, follow=True)
    assert "already paid" in response.content.decode()
    assert invoice.payments.count() == 1


def test_customers_cannot_reach_billing_admin(client, owner, invoice):
    client.force_login(owner)
    response = client.get("/admin/billing/invoice/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
