"""Card payments through the official Stripe SDK against the local stand-in, and webhooks
signed the way Stripe signs them."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import stripe as stripe_sdk

from accounts.models import AuditLog
from billing import services
from billing.models import (
    CreditNote,
    Invoice,
    Order,
    Payment,
    PaymentMethod,
    StripeEvent,
    Subscription,
)
from billing.selectors import credit_balance
from provisioning.models import Operation, Service
from tests.billing.conftest import deliver, events_of

pytestmark = pytest.mark.django_db(transaction=True)


def _order_and_pay(customer, plan, stripe_standin, *, card="4242424242424242", domain=None):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain=domain or "pay.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    url = services.invoice_checkout_start(
        invoice=invoice, success_url="http://testserver/ok", cancel_url="http://testserver/no"
    )
    session_id = url.rsplit("/", 1)[1]
    status, body = stripe_standin.complete_session(session_id, card)
    assert status == 200, body
    return order, invoice, session_id


def test_paid_checkout_delivered_three_times_and_out_of_order_applies_once(
    client, owner, customer, plan, tax_rates, node, stripe_standin
):
    # given an order paid on the stand-in's hosted page
    before = len(stripe_standin.events)
    order, invoice, _session = _order_and_pay(customer, plan, stripe_standin)
    events = stripe_standin.events[before:]
    kinds = [e["type"] for e in events]
    assert kinds == ["payment_intent.succeeded", "checkout.session.completed"]
    # when Stripe sends them out of order, each three times
    for event in reversed(events):
        for _ in range(3):
            response = deliver(client, event)
            assert response.status_code == 200
    # then one payment is recorded, the invoice and order are paid, one service was ordered
    invoice.refresh_from_db()
    order.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    assert Payment.objects.filter(invoice=invoice, gateway="stripe").count() == 1
    assert order.state == Order.State.PAID and order.fulfilled_at is not None
    service = Service.objects.get(customer=customer)
    assert service.domain == "pay.example.com"
    assert Operation.objects.filter(service=service, kind="create").count() == 1
    # and each event was stored once, counting its deliveries
    stored = StripeEvent.objects.filter(event_id__in=[e["id"] for e in events])
    assert sorted(s.deliveries for s in stored) == [3, 3]
    assert {s.status for s in stored} == {StripeEvent.Status.PROCESSED}
    # and the card is kept for renewals
    method = PaymentMethod.objects.get(customer=customer)
    assert (method.last4, method.is_default) == ("4242", True)
    assert Subscription.objects.get(order=order).payment_method == method
    # and the SDK really talked to the stand-in
    assert stripe_sdk.api_base == stripe_standin.base_url


def test_forged_and_stale_events_are_rejected_and_logged(
    client, customer, plan, tax_rates, node, stripe_standin
):
    before = len(stripe_standin.events)
    _order, invoice, _ = _order_and_pay(customer, plan, stripe_standin)
    event = stripe_standin.events[before]
    # when the event is signed with another secret
    forged = deliver(client, event, secret="whsec_attacker")
    # when the event is signed correctly but six minutes ago (tolerance is 300 s)
    stale = deliver(client, event, timestamp=int(time.time()) - 360)
    # then both are refused, nothing is recorded, and each refusal is in the audit log
    assert forged.status_code == 400 and stale.status_code == 400
    assert not StripeEvent.objects.exists()
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED
    rejected = AuditLog.objects.filter(action="billing.webhook_rejected")
    assert rejected.count() == 2
    assert any("tolerance" in row.detail["reason"] for row in rejected)
    # and an unsigned request is refused too
    assert (
        client.post(
            "/billing/webhooks/stripe/", data="{}", content_type="application/json"
        ).status_code
        == 400
    )


def test_event_for_unknown_invoice_is_kept_and_charges_nothing(
    client, customer, plan, tax_rates, stripe_standin
):
    # given a payment at Stripe whose metadata names an invoice this system does not have
    pm = stripe_standin.card_method("4242424242424242", None)
    status, _intent = stripe_standin.create_payment_intent(
        {
            "payment_method": pm["id"],
            "amount": "500",
            "currency": "eur",
            "confirm": "true",
            "metadata": {"invoice_id": "999999"},
        }
    )
    assert status == 200
    event = events_of(stripe_standin, "payment_intent.succeeded")[-1]
    # when it arrives
    response = deliver(client, event)
    # then it is acknowledged, stored as failed with a clear reason, nothing recorded
    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.FAILED
    assert "invoice 999999, which does not exist" in stored.result
    assert not Payment.objects.exists()


def test_refund_goes_back_to_the_card_with_a_credit_note_once(
    client, owner, customer, plan, tax_rates, node, stripe_standin
):
    before = len(stripe_standin.events)
    _order, invoice, _ = _order_and_pay(customer, plan, stripe_standin)
    for event in stripe_standin.events[before:]:
        deliver(client, event)
    payment = Payment.objects.get(invoice=invoice, gateway="stripe")
    # when staff refund half
    note = services.payment_refund(
        payment=payment, amount=Decimal("5.95"), reason="Goodwill", actor=owner
    )
    # then the stand-in holds a refund, a refund payment and a credit note are recorded
    refunds = [o for o in stripe_standin.objects.values() if o["object"] == "refund"]
    assert [r["amount"] for r in refunds if r["payment_intent"] == payment.external_id] == [595]
    assert note.disposition == CreditNote.Disposition.REFUND and note.total == Decimal("5.95")
    # when Stripe reports the refund by webhook, then it is not recorded a second time
    refunded = events_of(stripe_standin, "charge.refunded")[-1]
    deliver(client, refunded)
    assert Payment.objects.filter(kind="refund").count() == 1
    # and more than what is left cannot be refunded
    with pytest.raises(services.BillingError, match=r"Only 5\.95"):
        services.payment_refund(payment=payment, amount=Decimal("6.00"), reason="x")


def test_paying_twice_puts_the_second_payment_on_credit(
    client, customer, plan, tax_rates, node, stripe_standin
):
    # given two payment pages opened for the same invoice, both paid
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="twice.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    urls = [
        services.invoice_checkout_start(
            invoice=invoice, success_url="http://t/", cancel_url="http://t/"
        )
        for _ in range(2)
    ]
    before = len(stripe_standin.events)
    for url in urls:
        stripe_standin.complete_session(url.rsplit("/", 1)[1], "4242424242424242")
    for event in stripe_standin.events[before:]:
        deliver(client, event)
    # then the invoice is paid once and the second payment is account credit, not lost
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    assert Payment.objects.filter(invoice=invoice, gateway="stripe").count() == 2
    assert credit_balance(customer=customer, currency="EUR") == Decimal("11.90")
    # and the order was still provisioned once
    assert Service.objects.filter(domain="twice.example.com").count() == 1
    # and a paid invoice cannot start another payment
    with pytest.raises(services.BillingError, match="already paid"):
        services.invoice_checkout_start(
            invoice=invoice, success_url="http://t/", cancel_url="http://t/"
        )


def test_card_saved_through_a_setup_intent(client, customer, stripe_standin):
    url = services.card_setup_start(
        customer=customer, success_url="http://t/", cancel_url="http://t/"
    )
    before = len(stripe_standin.events)
    stripe_standin.complete_session(url.rsplit("/", 1)[1], "4000000000000341")
    for event in stripe_standin.events[before:]:
        assert deliver(client, event).status_code == 200
    method = PaymentMethod.objects.get(customer=customer)
    assert method.last4 == "0341" and method.is_default


def test_refund_made_at_stripe_is_recorded_with_a_credit_note(
    client, customer, plan, tax_rates, node, stripe_standin
):
    # given a paid order
    before = len(stripe_standin.events)
    _order, invoice, _ = _order_and_pay(customer, plan, stripe_standin)
    for event in stripe_standin.events[before:]:
        deliver(client, event)
    payment = Payment.objects.get(invoice=invoice, gateway="stripe")
    # when staff refund 4.00 in Stripe's own dashboard and Stripe reports it (twice)
    status, _refund = stripe_standin.create_refund(
        {"payment_intent": payment.external_id, "amount": "400"}
    )
    assert status == 200
    refunded = events_of(stripe_standin, "charge.refunded")[-1]
    deliver(client, refunded)
    deliver(client, refunded)
    # then one refund and one credit note of 4.00 are recorded
    refund = Payment.objects.get(kind="refund", reference=payment.external_id)
    assert refund.amount == Decimal("4.00")
    note = CreditNote.objects.get(invoice=invoice)
    assert note.total == Decimal("4.00") and note.disposition == "refund"


@pytest.mark.parametrize(
    ("currency", "price", "minor"),
    [
        ("JPY", Decimal("1500"), 1500),
        ("EUR", Decimal("10.00"), 1000),
        ("KWD", Decimal("3.250"), 3250),
    ],
)
def test_amounts_reach_stripe_in_the_currency_minor_units(
    client, customer, plan, node, stripe_standin, currency, price, minor
):
    # given a customer billed in a currency with 0, 2 or 3 decimals, outside any tax area
    from billing.models import Price

    customer.currency, customer.country = currency, "US"
    customer.save(update_fields=["currency", "country"])
    Price.objects.update_or_create(
        plan=plan, cycle="monthly", currency=currency, defaults={"amount": price}
    )
    # when the order is paid on the stand-in's page and its events arrive
    before = len(stripe_standin.events)
    _order, invoice, session_id = _order_and_pay(customer, plan, stripe_standin)
    for event in stripe_standin.events[before:]:
        deliver(client, event)
    # then Stripe was asked for the amount in the currency's smallest unit
    session = stripe_standin.objects[session_id]
    assert (session["amount_total"], session["currency"]) == (minor, currency.lower())
    # and the payment recorded is the invoice's amount, which is paid in full
    invoice.refresh_from_db()
    assert invoice.total == price and invoice.state == Invoice.State.PAID
    payment = Payment.objects.get(invoice=invoice, gateway="stripe")
    assert payment.amount == price
    # and a refund of one smallest unit reaches Stripe as 1
    smallest = Decimal(1).scaleb(-{"JPY": 0, "EUR": 2, "KWD": 3}[currency])
    services.payment_refund(payment=payment, amount=smallest, reason="rounding check")
    refunds = [o for o in stripe_standin.objects.values() if o["object"] == "refund"]
    assert [r["amount"] for r in refunds if r["payment_intent"] == payment.external_id] == [1]
