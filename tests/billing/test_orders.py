"""Orders, invoices, taxes, coupons and account credit on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services
from billing.errors import BillingError
from billing.models import Coupon, CreditEntry, Invoice, InvoiceLine, Order, Payment, Subscription
from billing.money import check_amount
from billing.selectors import add_months, credit_balance, order_quote
from billing.taxes import percent, tax_decide
from billing.vat import customer_tax_identity_change
from provisioning.models import Service

pytestmark = pytest.mark.django_db
TODAY = dt.date(2026, 3, 10)


def test_tax_follows_country_and_tax_id(customer, tax_rates, settings, vies_standin):
    # given the seller in Germany
    settings.BILLING_SELLER_COUNTRY = "DE"
    # when a German consumer buys, then German VAT applies
    assert tax_decide(customer=customer).rate == Decimal("19.00")
    # when a French business buys with a VAT id nobody checked, then French VAT applies
    customer.country, customer.tax_id = "FR", "FR40303265045"
    customer.save()
    decision = tax_decide(customer=customer)
    assert (decision.rate, decision.reverse_charge) == (Decimal("20.00"), False)
    assert "not been confirmed by VIES" in decision.warning
    # when VIES confirmed it, then reverse charge applies
    customer_tax_identity_change(
        customer=customer, country="FR", tax_id="FR 40 303 265 045", actor=None
    )
    decision = tax_decide(customer=customer)
    assert (decision.rate, decision.reverse_charge) == (Decimal("0"), True)
    assert "Reverse charge" in decision.note
    # when a French consumer buys, then French VAT applies
    customer.tax_id = ""
    assert tax_decide(customer=customer).rate == Decimal("20.00")
    # when a German business buys, then it still pays German VAT (no reverse charge at home)
    customer.country, customer.tax_id = "DE", "DE811907980"
    assert tax_decide(customer=customer).reverse_charge is False
    # and the rate reads as people write it
    assert tax_decide(customer=customer).note == "USt 19% (DE)"
    assert percent(Decimal("20.00")) == "20" and percent(Decimal("7.50")) == "7.5"
    # when someone in a country without a rate buys, then no tax
    customer.country = "US"
    assert tax_decide(customer=customer).rate == 0


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (Decimal("-1.00"), "EUR", "more than zero"),
        (Decimal("0"), "EUR", "more than zero"),
        (Decimal("5.00"), "USD", "is in USD"),
    ],
)
def test_bad_amounts_are_refused(amount, currency, message):
    with pytest.raises(BillingError, match=message):
        check_amount(amount, currency=currency, expected_currency="EUR")


def test_month_arithmetic_keeps_the_last_day():
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2026, 11, 15), 12) == dt.date(2027, 11, 15)


def test_order_invoice_has_lines_tax_and_totals_that_add_up(
    owner, customer, plan, storage_addon, tax_rates, django_capture_on_commit_callbacks
):
    # given a German customer ordering a plan with an addon
    # when they check out
    with django_capture_on_commit_callbacks(execute=True):
        order = services.order_place(
            customer=customer,
            plan=plan,
            cycle="monthly",
            domain="Shop.Example.COM",
            addons=[storage_addon],
            actor=owner,
            today=TODAY,
        )
    invoice = Invoice.objects.get(order=order)
    # then the invoice is issued with a number, two lines, 19 % VAT and a total that adds up
    assert order.domain == "shop.example.com"
    assert invoice.state == Invoice.State.ISSUED
    assert invoice.number == "INV-2026-000001"
    assert [line.amount for line in invoice.lines.all()] == [Decimal("10.00"), Decimal("2.50")]
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal("12.50"),
        Decimal("2.38"),
        Decimal("14.88"),
    )
    assert invoice.period_end == dt.date(2026, 4, 10)
    assert order.recurring_amount == Decimal("12.50")
    # and the owner got the invoice by e-mail
    assert any("INV-2026-000001" in m.subject for m in mail.outbox)
    assert mail.outbox[-1].to == ["olivia@example.com"]


def test_issued_invoice_never_changes(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="a.example.com", today=TODAY
    )
    invoice = Invoice.objects.get(order=order)
    # when code tries to change the amounts of the issued invoice
    invoice.total = Decimal("1.00")
    with pytest.raises(ValueError, match="cannot change"):
        invoice.save()
    with pytest.raises(ValueError, match="cannot change"):
        invoice.save(update_fields=["total"])
    # when code tries to add a line
    with pytest.raises(ValueError, match="cannot change"):
        InvoiceLine(
            invoice=invoice, description="x", unit_amount=Decimal(1), amount=Decimal(1)
        ).save()
    # then the database still holds the original
    invoice.refresh_from_db()
    assert invoice.total == Decimal("11.90")
    # and the database refuses totals that do not add up, even through a bulk update
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("99.00"))


def test_currency_without_price_is_refused(customer, plan, big_plan):
    customer.currency = "USD"
    with pytest.raises(BillingError, match="not sold monthly in USD"):
        order_quote(customer=customer, plan=big_plan, cycle="monthly")


@pytest.mark.parametrize(
    "domain",
    ["not a domain", "localhost", "-bad-.com", "1.2.3.4", "\u0430pple.com", "exam\u200bple.com"],
)
def test_bad_domains_are_refused(customer, plan, domain):
    from provisioning.errors import ProvisioningRefused
    from provisioning.validators import validate_domain

    with pytest.raises(ProvisioningRefused) as expected:
        validate_domain(domain)
    # the checkout gives the panel's one answer, in the panel's words
    with pytest.raises(BillingError) as refused:
        services.order_place(customer=customer, plan=plan, cycle="monthly", domain=domain)
    assert refused.value.messages == expected.value.messages
    assert not Order.objects.exists() and not Invoice.objects.exists()


def test_percent_coupon_discounts_first_invoice_and_counts_once(customer, plan, tax_rates):
    coupon = Coupon.objects.create(code="welcome20", kind="percent", value=Decimal("20"))
    order = services.order_place(
        customer=customer,
        plan=plan,
        cycle="annual",
        domain="b.example.com",
        coupon_code=" Welcome20 ",
        today=TODAY,
    )
    invoice = Invoice.objects.get(order=order)
    assert [line.amount for line in invoice.lines.all()] == [Decimal("100.00"), Decimal("-20.00")]
    assert invoice.subtotal == Decimal("80.00")
    assert order.recurring_amount == Decimal("100.00")
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 1
    # when the same customer tries it again, then it is refused
    with pytest.raises(BillingError, match="already used"):
        services.order_place(
            customer=customer,
            plan=plan,
            cycle="annual",
            domain="c.example.com",
            coupon_code="WELCOME20",
            today=TODAY,
        )


def test_coupon_past_its_limits_is_refused(customer, stranger, plan, tax_rates):
    other = stranger.memberships.get().customer
    Coupon.objects.create(
        code="ONCE",
        kind="fixed",
        value=Decimal("5"),
        currency="EUR",
        max_redemptions=1,
        once_per_customer=False,
    )
    Coupon.objects.create(
        code="OLD",
        kind="percent",
        value=Decimal("10"),
        valid_until=timezone.now() - dt.timedelta(days=1),
    )
    Coupon.objects.create(code="DOLLARS", kind="fixed", value=Decimal("5"), currency="USD")
    services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="d.example.com", coupon_code="ONCE"
    )
    with pytest.raises(BillingError, match="used up"):
        services.order_place(
            customer=other, plan=plan, cycle="monthly", domain="e.example.com", coupon_code="ONCE"
        )
    with pytest.raises(BillingError, match="expired"):
        order_quote(customer=customer, plan=plan, cycle="monthly", coupon_code="OLD")
    with pytest.raises(BillingError, match="for orders in USD"):
        order_quote(customer=customer, plan=plan, cycle="monthly", coupon_code="DOLLARS")
    with pytest.raises(BillingError, match="does not exist"):
        order_quote(customer=customer, plan=plan, cycle="monthly", coupon_code="NOPE")


def test_fixed_coupon_never_makes_the_invoice_negative(customer, plan, tax_rates):
    Coupon.objects.create(code="BIG", kind="fixed", value=Decimal("500"), currency="EUR")
    quote = order_quote(customer=customer, plan=plan, cycle="monthly", coupon_code="BIG")
    assert quote.subtotal == Decimal("0.00") and quote.total == Decimal("0.00")


def test_credit_pays_the_invoice_first_and_a_paid_order_is_provisioned_once(
    owner, customer, plan, tax_rates, node, django_capture_on_commit_callbacks
):
    # given 20 EUR of account credit
    services.credit_add(
        customer=customer, amount=Decimal("20.00"), currency="EUR", memo="goodwill", actor=owner
    )
    # when the customer orders a plan costing 11.90 gross
    with django_capture_on_commit_callbacks(execute=True):
        order = services.order_place(
            customer=customer, plan=plan, cycle="monthly", domain="f.example.com", today=TODAY
        )
    invoice = Invoice.objects.get(order=order)
    order.refresh_from_db()
    # then the credit paid it, the order is paid and handed to provisioning exactly once
    assert invoice.state == Invoice.State.PAID
    assert invoice.payments.get().gateway == Payment.Gateway.CREDIT
    assert credit_balance(customer=customer, currency="EUR") == Decimal("8.10")
    assert order.state == Order.State.PAID and order.fulfilled_at is not None
    assert Service.objects.filter(customer=customer, domain="f.example.com").count() == 1
    sub = Subscription.objects.get(order=order)
    assert (sub.next_due_date, sub.amount) == (dt.date(2026, 4, 10), Decimal("10.00"))
    # when the outbox sweep or a retry runs again, then nothing new happens
    assert services.order_fulfil(order_id=order.pk) == sub
    assert Service.objects.filter(customer=customer).count() == 1


def test_unpaid_order_is_not_provisioned(customer, plan, tax_rates, node):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="g.example.com"
    )
    assert services.order_fulfil(order_id=order.pk) is None
    assert not Service.objects.exists()


def test_manual_payment_marks_paid_and_refuses_a_second_time(
    owner, customer, plan, tax_rates, node, django_capture_on_commit_callbacks
):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="h.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    with django_capture_on_commit_callbacks(execute=True):
        services.payment_record(
            invoice=invoice,
            amount=Decimal("11.90"),
            currency="EUR",
            gateway="manual",
            reference="bank transfer 4711",
            actor=owner,
        )
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    assert Service.objects.filter(domain="h.example.com").count() == 1
    # when staff try to mark it paid again, then it is refused and nothing is recorded
    with pytest.raises(BillingError, match="already paid"):
        services.payment_record(
            invoice=invoice, amount=Decimal("11.90"), currency="EUR", gateway="manual"
        )
    assert invoice.payments.count() == 1


def test_partial_then_overpayment_goes_to_credit(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="i.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    services.payment_record(
        invoice=invoice, amount=Decimal("5.00"), currency="EUR", gateway="manual"
    )
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_due == Decimal("6.90")
    services.payment_record(
        invoice=invoice, amount=Decimal("10.00"), currency="EUR", gateway="manual"
    )
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == invoice.total
    assert credit_balance(customer=customer, currency="EUR") == Decimal("3.10")
    assert CreditEntry.objects.get().kind == CreditEntry.Kind.OVERPAYMENT


def test_same_processor_payment_is_recorded_once(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="j.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    for _ in range(3):
        services.payment_record(
            invoice=invoice,
            amount=Decimal("11.90"),
            currency="EUR",
            gateway="stripe",
            external_id="pi_123",
        )
    assert Payment.objects.filter(external_id="pi_123").count() == 1
    assert credit_balance(customer=customer, currency="EUR") == 0


def test_credit_note_cancels_unpaid_invoice_and_voids_it(owner, customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="k.example.com", today=TODAY
    )
    invoice = Invoice.objects.get(order=order)
    with pytest.raises(BillingError, match=r"only 11\.90 EUR left to credit"):
        services.credit_note_issue(
            invoice=invoice, amount=Decimal("20"), reason="typo", disposition="cancel"
        )
    note = services.credit_note_issue(
        invoice=invoice,
        amount=Decimal("11.90"),
        reason="Ordered by mistake",
        disposition="cancel",
        actor=owner,
        today=TODAY,
    )
    invoice.refresh_from_db()
    assert note.number == "CN-2026-000001"
    assert (note.subtotal, note.tax_total) == (Decimal("10.00"), Decimal("1.90"))
    assert invoice.state == Invoice.State.VOID and invoice.amount_due == 0
    # the invoice itself kept its amounts
    assert invoice.total == Decimal("11.90")


def test_credit_note_to_account_credit_for_paid_invoice(customer, plan, tax_rates):
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="l.example.com"
    )
    invoice = Invoice.objects.get(order=order)
    services.payment_record(
        invoice=invoice, amount=Decimal("11.90"), currency="EUR", gateway="manual"
    )
    services.credit_note_issue(
        invoice=invoice, amount=Decimal("5.95"), reason="Outage", disposition="credit"
    )
    assert credit_balance(customer=customer, currency="EUR") == Decimal("5.95")
    with pytest.raises(BillingError, match=r"5\.95 EUR left to credit"):
        services.credit_note_issue(
            invoice=invoice, amount=Decimal("6.00"), reason="again", disposition="credit"
        )
