"""Downgrades, cancellations and plan changes after the renewal invoice: every correction is a
credit note with its tax on the invoice it corrects; a renewal at the old price is replaced."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing import automation, services
from billing.models import CreditEntry, CreditNote, Invoice, Subscription
from billing.selectors import credit_balance
from tests.billing.conftest import active_subscription, engine_finishes

pytestmark = pytest.mark.django_db
DUE = dt.date(2026, 4, 10)  # the term runs 11 March to 10 April (30 days)
START = DUE - dt.timedelta(days=30)


def term_invoice(sub: Subscription, *, paid: bool = True) -> Invoice:
    """The invoice that billed the running term (as the order or last renewal did)."""
    invoice = services.invoice_create(
        customer=sub.customer,
        kind=Invoice.Kind.RENEWAL,
        lines=[services.LineSpec(f"{sub.plan}", sub.amount)],
        due_date=START,
        today=START,
        subscription=sub,
        period_start=START,
        period_end=DUE,
    )
    if paid:
        services.payment_record(
            invoice=invoice, amount=invoice.total, currency="EUR", gateway="manual"
        )
    return Invoice.objects.get(pk=invoice.pk)


@pytest.fixture
def subscribed(customer, big_plan, tax_rates, node, billing_settings):
    """A German customer on the 30 EUR plan, the term paid (35.70 with 19% VAT)."""
    sub = active_subscription(customer=customer, plan=big_plan, due=DUE, amount=Decimal("30.00"))
    return sub, term_invoice(sub)


def test_a_downgrade_credits_the_gross_amount_through_a_credit_note(subscribed, plan):
    sub, paid = subscribed
    # when the customer moves to the 10 EUR plan with 15 of 30 days left
    assert (
        services.subscription_change_plan(
            subscription=sub, plan=plan, today=DUE - dt.timedelta(days=15)
        )
        is None
    )
    # then 15.00 - 5.00 = 10.00 net comes back with its 19% VAT on a credit note
    note = CreditNote.objects.get(invoice=paid)
    assert (note.subtotal, note.tax_total, note.total) == (
        Decimal("10.00"),
        Decimal("1.90"),
        Decimal("11.90"),
    )
    assert note.disposition == CreditNote.Disposition.CREDIT and note.number.startswith("CN-")
    # and the customer's credit is the gross amount, tied to the credit note
    entry = CreditEntry.objects.get(kind="credit_note")
    assert entry.amount == Decimal("11.90") and entry.credit_note == note
    assert credit_balance(customer=sub.customer, currency="EUR") == Decimal("11.90")
    # and no bare proration entry bypasses the books
    assert not CreditEntry.objects.filter(kind="proration").exists()


def test_a_reverse_charged_term_is_credited_without_tax(subscribed, plan, settings):
    sub, paid = subscribed
    Invoice.objects.filter(pk=paid.pk).update(
        reverse_charge=True, tax_rate=0, tax_total=0, total=Decimal("30.00"), amount_paid=30
    )
    services.subscription_change_plan(
        subscription=sub, plan=plan, today=DUE - dt.timedelta(days=15)
    )
    note = CreditNote.objects.get(invoice=paid)
    assert (note.subtotal, note.tax_total) == (Decimal("10.00"), Decimal("0.00"))


def test_an_unpaid_term_is_cancelled_not_credited(customer, big_plan, plan, tax_rates, node):
    sub = active_subscription(customer=customer, plan=big_plan, due=DUE, amount=Decimal("30.00"))
    unpaid = term_invoice(sub, paid=False)
    services.subscription_change_plan(
        subscription=sub, plan=plan, today=DUE - dt.timedelta(days=15)
    )
    # then the invoice asks 11.90 less, and no money appears on the account
    note = CreditNote.objects.get(invoice=unpaid)
    assert note.disposition == CreditNote.Disposition.CANCEL and note.total == Decimal("11.90")
    unpaid.refresh_from_db()
    assert unpaid.amount_due == Decimal("35.70") - Decimal("11.90")
    assert credit_balance(customer=customer, currency="EUR") == 0


def test_cancelling_now_credits_the_unused_days_and_cancels_the_rest(subscribed, billing_settings):
    sub, paid = subscribed
    # given next month's renewal invoice already issued and unpaid
    automation.billing_run(today=DUE - dt.timedelta(days=14))
    renewal = Invoice.objects.get(subscription=sub, period_start=DUE)
    # when the customer cancels now, with 14 of 30 days left
    services.subscription_cancel(
        subscription=sub, at_period_end=False, today=DUE - dt.timedelta(days=14)
    )
    # then the paid term gives back 14/30 of 30.00 = 14.00 net, 16.66 with VAT
    note = CreditNote.objects.get(invoice=paid)
    assert (note.subtotal, note.total, note.disposition) == (
        Decimal("14.00"),
        Decimal("16.66"),
        CreditNote.Disposition.CREDIT,
    )
    assert credit_balance(customer=sub.customer, currency="EUR") == Decimal("16.66")
    # and the renewal that will never be used is cancelled by its own credit note
    renewal.refresh_from_db()
    assert renewal.state == Invoice.State.VOID
    assert CreditNote.objects.get(invoice=renewal).disposition == CreditNote.Disposition.CANCEL
    sub.refresh_from_db()
    assert sub.state == Subscription.State.CANCELLED


def test_a_downgrade_after_the_renewal_invoice_replaces_it_at_the_new_price(
    subscribed, plan, billing_settings
):
    sub, _paid = subscribed
    # given the renewal at 30.00 (35.70) issued 14 days ahead, unpaid
    automation.billing_run(today=DUE - dt.timedelta(days=14))
    old = Invoice.objects.get(subscription=sub, period_start=DUE)
    assert old.total == Decimal("35.70")
    # when the customer moves down to the 10 EUR plan
    services.subscription_change_plan(
        subscription=sub, plan=plan, today=DUE - dt.timedelta(days=10)
    )
    # then the old renewal is cancelled in full by a credit note and marked superseded
    old.refresh_from_db()
    assert old.superseded and old.state == Invoice.State.VOID
    cancel = CreditNote.objects.get(invoice=old)
    assert (cancel.total, cancel.disposition) == (Decimal("35.70"), CreditNote.Disposition.CANCEL)
    # and a new renewal for the same term asks the new price
    new = Invoice.objects.get(subscription=sub, period_start=DUE, superseded=False)
    assert new.replaces == old and new.kind == Invoice.Kind.RENEWAL
    assert (new.subtotal, new.total, new.period_end) == (
        Decimal("10.00"),
        Decimal("11.90"),
        old.period_end,
    )
    # but the credit from the downgrade pays it first: 10 days of 20.00 difference = 6.67 net
    assert new.amount_paid == Decimal("7.94")
    # and the next daily runs issue no third one
    automation.billing_run(today=DUE - dt.timedelta(days=9), force=True)
    assert Invoice.objects.filter(subscription=sub, period_start=DUE).count() == 2


def test_an_upgrade_after_a_paid_renewal_corrects_it_once_paid(
    customer, plan, big_plan, tax_rates, node, billing_settings, django_capture_on_commit_callbacks
):
    # given a 10 EUR subscription whose next renewal (11.90) is already paid
    sub = active_subscription(customer=customer, plan=plan, due=DUE)
    term_invoice(sub)
    automation.billing_run(today=DUE - dt.timedelta(days=14))
    old = Invoice.objects.get(subscription=sub, period_start=DUE)
    services.payment_record(invoice=old, amount=old.total, currency="EUR", gateway="manual")
    # when the customer upgrades to 30 EUR and pays the prorated invoice
    change = services.subscription_change_plan(
        subscription=sub, plan=big_plan, today=DUE - dt.timedelta(days=10)
    )
    assert change is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.payment_record(
            invoice=change, amount=change.total, currency="EUR", gateway="manual"
        )
    engine_finishes(sub.service)
    sub.refresh_from_db()
    assert sub.plan == big_plan
    # the running term is 10 March to 10 April (the paid renewal starts after it): 10 of 31
    # days at the 20.00 difference, 6.45 net, 7.68 with VAT
    assert change.total == Decimal("7.68")
    # then the paid renewal is credited back in full (11.90 to the account) and replaced
    old.refresh_from_db()
    assert old.superseded and old.state == Invoice.State.PAID
    credit = CreditNote.objects.get(invoice=old)
    assert (credit.total, credit.disposition) == (Decimal("11.90"), CreditNote.Disposition.CREDIT)
    new = Invoice.objects.get(subscription=sub, period_start=DUE, superseded=False)
    assert new.total == Decimal("35.70") and new.replaces == old
    # and that credit already pays part of the new one
    assert new.amount_paid == Decimal("11.90") and new.amount_due == Decimal("23.80")
