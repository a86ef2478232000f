"""Storefront and billing pages: pricing, plan and domain, account step, summary with
taxes, payment step, invoices, PDF, and who may see what."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from billing.models import Invoice, Order, Payment
from provisioning.models import Service

pytestmark = pytest.mark.django_db


def test_pricing_page_lists_plans_with_prices(client, plan, big_plan):
    response = client.get("/pricing/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Starter" in html and "10.00 EUR" in html and "30.00 EUR" in html
    assert "css/billing.css" in html
    annual = client.get("/pricing/?cycle=annual").content.decode()
    assert "100.00 EUR" in annual and "/ year" in annual


def test_order_form_shows_addon_prices(client, plan, storage_addon):
    page = client.get("/order/starter/").content.decode()
    assert "Extra storage 10 GB · 2.50 EUR a month or 25.00 EUR a year" in page


def test_checkout_from_plan_to_payment(
    client, owner, plan, storage_addon, tax_rates, stripe_standin
):
    # given a visitor who picks a plan with a domain and an addon
    response = client.post(
        "/order/starter/",
        {
            "domain": "www.Bakery.example",
            "cycle": "monthly",
            "addons": [storage_addon.pk],
            "coupon": "",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/checkout/"
    # then, not signed in, they are asked to sign up or sign in and come back
    page = client.get("/checkout/").content.decode()
    assert "/accounts/signup/?next=/checkout/" in page
    assert "/accounts/login/?next=/checkout/" in page
    # when signed in, the summary shows lines, German VAT and the total
    client.force_login(owner)
    page = client.get("/checkout/").content.decode()
    assert "bakery.example" in page
    assert "USt 19% (DE)" in page and "14.88 EUR" in page
    # when they place the order, then an invoice awaits payment
    response = client.post("/checkout/")
    order = Order.objects.get()
    invoice = Invoice.objects.get(order=order)
    assert response["Location"] == f"/billing/invoices/{invoice.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "Pay 14.88 EUR by card" in page
    # when they choose to pay, they are sent to the card processor's page
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{stripe_standin.base_url}/pay/cs_test_")


def test_bad_domain_and_used_up_coupon_are_explained(client, owner, plan, tax_rates):
    response = client.post(
        "/order/starter/", {"domain": "not a domain", "cycle": "monthly", "coupon": ""}
    )
    assert "A domain name cannot contain spaces" in response.content.decode()
    client.force_login(owner)
    client.post("/order/starter/", {"domain": "ok.example", "cycle": "monthly", "coupon": "NOPE"})
    response = client.get("/checkout/", follow=True)
    assert "The coupon NOPE does not exist." in response.content.decode()


def test_invoices_are_private_to_the_customer(
    client, owner, teammate, stranger, customer, plan, tax_rates
):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="p.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    client.force_login(stranger)
    assert client.get(f"/billing/invoices/{invoice.pk}/").status_code == 404
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/").status_code == 404
    assert client.post(f"/billing/invoices/{invoice.pk}/pay/").status_code == 404
    client.force_login(teammate)
    assert client.get(f"/billing/invoices/{invoice.pk}/").status_code == 200
    client.force_login(owner)
    listing = client.get("/billing/invoices/").content.decode()
    assert invoice.number in listing


def test_invoice_pdf(client, owner, customer, plan, tax_rates):
    customer.company, customer.tax_id = "Bakery GmbH", "DE811907980"
    customer.save()
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="q.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    client.force_login(owner)
    response = client.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert invoice.number in response["Content-Disposition"]
    assert len(response.content) > 2000


def test_only_the_owner_cancels(
    client, owner, teammate, customer, plan, tax_rates, node, billing_settings
):
    import datetime as dt

    from tests.billing.conftest import active_subscription

    sub = active_subscription(customer=customer, plan=plan, due=dt.date(2026, 6, 1))
    client.force_login(teammate)
    assert client.post(f"/billing/subscriptions/{sub.pk}/cancel/").status_code == 404
    client.force_login(owner)
    client.post(f"/billing/subscriptions/{sub.pk}/cancel/", {"when": "end"})
    sub.refresh_from_db()
    assert sub.cancel_at_period_end is True
    assert (
        "Ends 2026-06-01" in client.get("/billing/invoices/").content.decode()
        or "Ends June 1, 2026" in client.get("/billing/invoices/").content.decode()
    )
    assert Decimal(sub.amount) == Decimal("10.00")


def test_credit_note_pdf_for_the_customer_only(client, owner, stranger, customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="cn.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    note = services.credit_note_issue(
        invoice=invoice, amount=Decimal("11.90"), reason="Ordered twice", disposition="cancel"
    )
    client.force_login(owner)
    page = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert note.number in page and "Cancelled" in page
    response = client.get(f"/billing/credit-notes/{note.pk}/pdf/")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    client.force_login(stranger)
    assert client.get(f"/billing/credit-notes/{note.pk}/pdf/").status_code == 404


def test_owner_closes_a_service_now(
    client, owner, customer, plan, tax_rates, node, billing_settings
):
    import datetime as dt

    from provisioning.models import Operation
    from tests.billing.conftest import active_subscription

    sub = active_subscription(customer=customer, plan=plan, due=dt.date(2026, 6, 1))
    client.force_login(owner)
    assert "Close now" in client.get("/billing/invoices/").content.decode()
    client.post(f"/billing/subscriptions/{sub.pk}/cancel/", {"when": "now"})
    sub.refresh_from_db()
    assert sub.state == "cancelled"
    assert Operation.objects.filter(service=sub.service, kind="terminate").count() == 1


def test_the_page_back_from_the_card_processor_waits_for_the_payment_then_leads_to_the_account(
    client, owner, customer, plan, tax_rates, node, django_capture_on_commit_callbacks
):
    # given an order whose invoice the customer just paid on the card page
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="back.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    client.force_login(owner)
    url = f"/billing/invoices/{invoice.pk}/?paid=1"
    # when the processor has not confirmed yet, then the page says so and polls itself
    page = client.get(url).content.decode()
    assert "We are waiting for the card processor" in page
    assert 'hx-trigger="every 2s"' in page and "Watch it being set up" not in page
    # and it reads "Payment processing", with no Pay button, not "Open"
    assert "Payment processing" in page and ">Open<" not in page
    assert "/pay/" not in page and "by card</button>" not in page
    # also when the customer opens the invoice again without coming back from the card page
    again = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "Payment processing" in again and "by card</button>" not in again
    # when the payment arrives and the order becomes a hosting account
    with django_capture_on_commit_callbacks(execute=True):
        services.payment_record(
            invoice=invoice,
            amount=invoice.total,
            currency=invoice.currency,
            gateway=Payment.Gateway.STRIPE,
            external_id="pi_back",
        )
    service = Service.objects.get(domain="back.example.com")
    # then the page confirms it, stops polling and links to the account being set up
    page = client.get(url).content.decode()
    assert "Payment received" in page and "hx-trigger" not in page
    assert f'href="/services/{service.pk}/"' in page
    # and without coming back from the card page it is a plain invoice
    plain = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "Payment received" not in plain and "hx-trigger" not in plain
