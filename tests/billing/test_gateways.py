"""One call collects an invoice through any gateway: account credit, manual, saved card."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from billing.errors import BillingError
from billing.models import CreditEntry, Invoice, Payment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def invoice(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="collect.example.com"
    )
    return Invoice.objects.get(order=order)


def _card(customer, stripe_standin, number):
    ref = services.stripe_customer_ref(customer=customer)
    card = stripe_standin.card_method(number, ref)
    return services.payment_method_save(
        customer=customer, external_id=card["id"], card=card["card"]
    )


def test_account_credit(customer, invoice):
    with pytest.raises(BillingError, match="no account credit"):
        services.invoice_collect(invoice=invoice, gateway="credit")
    CreditEntry.objects.create(
        customer=customer, currency="EUR", amount=Decimal("20.00"), kind="manual", memo="x"
    )
    payment = services.invoice_collect(invoice=invoice, gateway="credit")
    invoice.refresh_from_db()
    assert payment is not None and payment.gateway == Payment.Gateway.CREDIT
    assert invoice.state == Invoice.State.PAID


def test_manual_payment_and_no_second_time(owner, invoice):
    services.invoice_collect(invoice=invoice, gateway="manual", actor=owner, reference="cash")
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    with pytest.raises(BillingError, match="already paid"):
        services.invoice_collect(invoice=invoice, gateway="manual", actor=owner)
    with pytest.raises(BillingError, match="not a payment gateway"):
        services.invoice_collect(
            invoice=Invoice.objects.create(
                customer=invoice.customer,
                currency="EUR",
                number="X-1",
                state="issued",
                subtotal=Decimal(1),
                total=Decimal(1),
            ),
            gateway="paypal",
        )


def test_saved_card(client, owner, customer, invoice, stripe_standin):
    with pytest.raises(BillingError, match="No card is saved"):
        services.invoice_collect(invoice=invoice, gateway="stripe")
    # a card that is declined: a clear refusal, nothing recorded
    _card(customer, stripe_standin, "4000000000000341")
    with pytest.raises(BillingError, match="declined"):
        services.invoice_collect(invoice=invoice, gateway="stripe")
    assert not Payment.objects.exists()
    # a card that pays, from the invoice page
    _card(customer, stripe_standin, "4242424242424242")
    client.force_login(owner)
    page = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "with Visa ending 4242" in page
    response = client.post(f"/billing/invoices/{invoice.pk}/pay-saved/", follow=True)
    assert "your card was charged" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    assert invoice.payments.get().external_id.startswith("pi_")


def test_a_card_the_processor_no_longer_knows_is_explained_in_plain_words(
    customer, invoice, stripe_standin
):
    # given a saved card the processor has no record of (its state was lost)
    ref = services.stripe_customer_ref(customer=customer)
    card = stripe_standin.card_method("4242424242424242", ref)
    services.payment_method_save(customer=customer, external_id=card["id"], card=card["card"])
    del stripe_standin.objects[card["id"]]

    # when the invoice is charged to it
    with pytest.raises(BillingError) as refused:
        services.invoice_collect(invoice=invoice, gateway="stripe")

    # then the customer reads what to do, not the processor's words
    message = refused.value.messages[0]
    assert "No such" not in message and card["id"] not in message
    assert "no longer on file" in message and "Add the card again" in message
    assert not Payment.objects.exists()


def test_the_stand_in_keeps_saved_cards_across_a_restart(tmp_path):
    from tests.billing.conftest import standin_module

    # given a stand-in keeping its state on disk, where a customer saved a card
    server, state = standin_module.serve(state_dir=str(tmp_path))
    _, customer = state.create_customer({"email": "keep@example.com"})
    _, session = state.create_session(
        {"mode": "setup", "customer": customer["id"], "success_url": "/", "cancel_url": "/"}
    )
    status, _ = state.complete_session(session["id"], "4242424242424242")
    state.save()
    server.shutdown()
    assert status == 200
    saved = state.objects[state.objects[session["id"]]["setup_intent"]]["payment_method"]

    # when it starts again from the same directory
    server, again = standin_module.serve(state_dir=str(tmp_path))
    try:
        status, intent = again.create_payment_intent(
            {"payment_method": saved, "amount": "500", "confirm": "true"}
        )
    finally:
        server.shutdown()

    # then the saved card still pays, and no temporary file is left behind
    assert status == 200 and intent["status"] == "succeeded"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
