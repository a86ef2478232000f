"""The daily run with a clock that moves: renewals, card retries, reminders, overdue,
suspension after the grace days, unsuspension on payment, termination, and re-runs."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.management import call_command

from billing import automation, services
from billing.gateways.stripe import StripeGateway
from billing.models import (
    BillingRun,
    ChargeAttempt,
    CreditNote,
    Invoice,
    Notice,
    Payment,
    Subscription,
)
from billing.selectors import credit_balance
from provisioning.models import Operation, Service
from tests.billing.conftest import active_subscription, deliver, engine_finishes

pytestmark = pytest.mark.django_db(transaction=True)
DUE = dt.date(2026, 4, 10)


def day(offset: int) -> dt.date:
    return DUE + dt.timedelta(days=offset)


def saved_card(customer, stripe_standin, number: str):
    ref = services.stripe_customer_ref(customer=customer)
    card = stripe_standin.card_method(number, ref)
    return services.payment_method_save(
        customer=customer, external_id=card["id"], card=card["card"]
    )


def run(offset: int, **kwargs) -> BillingRun:
    return automation.billing_run(today=day(offset), **kwargs)


def test_renewal_decline_suspension_payment_unsuspension(
    client, owner, customer, plan, tax_rates, node, billing_settings, stripe_standin
):
    # given an active service due on 10 April whose saved card will be declined
    card = saved_card(customer, stripe_standin, "4000000000000341")
    sub = active_subscription(customer=customer, plan=plan, due=DUE, method=card)
    service = sub.service

    # 14 days before: one renewal invoice for the next month, mailed
    first = run(-14)
    invoice = Invoice.objects.get(subscription=sub, kind="renewal")
    assert first.counts["renewal_invoices"] == 1
    assert (invoice.due_date, invoice.period_start, invoice.period_end) == (
        DUE,
        DUE,
        dt.date(2026, 5, 10),
    )
    assert invoice.total == Decimal("11.90")
    assert any(str(invoice.number) in str(m.subject) for m in mail.outbox)
    # the same day again: the recorded run is returned; forced: still no second invoice
    assert run(-14).pk == first.pk
    assert run(-14, force=True).counts["renewal_invoices"] == 0
    # the next days: no duplicate either
    assert run(-13).counts["renewal_invoices"] == 0
    assert Invoice.objects.filter(subscription=sub).count() == 1

    # 7 days before: a reminder
    assert run(-7).counts["reminders"] == 1
    # on the due date: the card is charged and declined, the customer is told
    due_run = run(0)
    assert due_run.counts["charges_failed"] == 1
    failed_mail = [m for m in mail.outbox if "could not charge" in m.subject]
    assert len(failed_mail) == 1 and "April 12, 2026" in failed_mail[0].body
    # the day after: overdue, reminded, not charged (the next try is on day 2)
    after = run(1)
    assert after.counts["overdue_marked"] == 1 and after.counts["reminders"] == 1
    assert after.counts.get("charges_failed", 0) == 0
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.OVERDUE
    # day 2 and day 4: the retries, each declined once
    assert run(2).counts["charges_failed"] == 1
    assert run(4).counts["charges_failed"] == 1
    assert run(5).counts.get("charges_failed", 0) == 0
    assert ChargeAttempt.objects.filter(invoice=invoice).count() == 3

    # before the grace days end, nothing is suspended
    assert run(6).counts["suspended"] == 0
    # after 7 days: suspended for non-payment
    assert run(7).counts["suspended"] == 1
    service = Service.objects.get(pk=service.pk)
    assert service.suspension_reasons == ["non_payment"]
    assert Operation.objects.filter(service=service, kind="suspend").count() == 1
    assert any("suspended" in m.subject for m in mail.outbox)
    assert run(8).counts["suspended"] == 0
    engine_finishes(service, "suspended")

    # when the customer pays with another card on the hosted page
    url = services.invoice_checkout_start(
        invoice=invoice, success_url="http://t/", cancel_url="http://t/"
    )
    before = len(stripe_standin.events)
    stripe_standin.complete_session(url.rsplit("/", 1)[1], "4242424242424242")
    for event in stripe_standin.events[before:]:
        assert deliver(client, event).status_code == 200
    # then the invoice is paid, the term moves on, and only the non-payment reason is lifted
    invoice.refresh_from_db()
    sub.refresh_from_db()
    service = Service.objects.get(pk=service.pk)
    assert invoice.state == Invoice.State.PAID
    assert sub.next_due_date == dt.date(2026, 5, 10)
    assert service.suspension_reasons == []
    assert Operation.objects.filter(service=service, kind="unsuspend").count() == 1
    assert any("back online" in m.subject for m in mail.outbox)
    # and the run afterwards does nothing more for this service
    later = run(9)
    assert later.counts["unsuspended"] == 0 and later.counts["suspended"] == 0


def test_abuse_suspension_stays_when_the_invoice_is_paid(
    owner, customer, plan, tax_rates, node, billing_settings
):
    from provisioning import services as provisioning

    sub = active_subscription(customer=customer, plan=plan, due=DUE)
    run(-14)
    run(7)
    service = engine_finishes(sub.service, "suspended")
    provisioning.service_suspend(service=service, reason="abuse")
    invoice = Invoice.objects.get(subscription=sub)
    services.payment_record(invoice=invoice, amount=invoice.total, currency="EUR", gateway="manual")
    service = Service.objects.get(pk=service.pk)
    assert service.suspension_reasons == ["abuse"]
    assert service.state == Service.State.SUSPENDED
    assert not Operation.objects.filter(service=service, kind="unsuspend").exists()


def test_unpaid_service_is_terminated_and_its_invoice_cancelled(
    owner, customer, plan, tax_rates, node, billing_settings
):
    # given a service without a saved card whose renewal is never paid
    sub = active_subscription(customer=customer, plan=plan, due=DUE)
    run(-14)
    run(7)
    engine_finishes(sub.service, "suspended")
    # 29 days after the due date: still only suspended
    assert run(29).counts["terminated"] == 0
    # 30 days after: terminated, the invoice cancelled by a credit note, the customer told
    assert run(30).counts["terminated"] == 1
    sub.refresh_from_db()
    invoice = Invoice.objects.get(subscription=sub)
    assert sub.state == Subscription.State.CANCELLED
    assert Operation.objects.filter(service=sub.service, kind="terminate").count() == 1
    assert invoice.state == Invoice.State.VOID
    assert invoice.credit_notes.get().disposition == CreditNote.Disposition.CANCEL
    assert any("has been closed" in m.subject for m in mail.outbox)
    # and no further renewal invoice is issued for it
    assert run(40).counts["renewal_invoices"] == 0


def test_staff_change_the_grace_days(customer, plan, tax_rates, node, billing_settings):
    billing_settings.grace_days = 3
    billing_settings.save()
    active_subscription(customer=customer, plan=plan, due=DUE)
    run(-14)
    assert run(2).counts["suspended"] == 0
    assert run(3).counts["suspended"] == 1


def test_cancel_at_term_end_stops_renewal_and_closes_on_the_due_date(
    owner, customer, plan, tax_rates, node, billing_settings
):
    sub = active_subscription(customer=customer, plan=plan, due=DUE)
    services.subscription_cancel(subscription=sub, at_period_end=True, actor=owner)
    assert run(-14).counts["renewal_invoices"] == 0
    assert run(0).counts["cancelled_at_term_end"] == 1
    sub.refresh_from_db()
    assert sub.state == Subscription.State.CANCELLED
    assert Operation.objects.filter(service=sub.service, kind="terminate").count() == 1


def test_rerun_after_a_crash_between_charge_and_record_charges_once(
    customer, plan, tax_rates, node, billing_settings, stripe_standin
):
    # given a renewal invoice and a card that pays
    card = saved_card(customer, stripe_standin, "4242424242424242")
    sub = active_subscription(customer=customer, plan=plan, due=DUE, method=card)
    run(-14)
    invoice = Invoice.objects.get(subscription=sub)
    # and a run on the due date that died right after Stripe charged the card:
    # its attempt row is pending, its day is recorded as running
    attempt = ChargeAttempt.objects.create(
        invoice=invoice, number=0, run_date=DUE, idempotency_key=f"renewal-{invoice.pk}-0"
    )
    StripeGateway().charge(
        customer_ref=services.stripe_customer_ref(customer=customer),
        payment_method_ref=card.external_id,
        amount=invoice.amount_due,
        currency="EUR",
        idempotency_key=attempt.idempotency_key,
        metadata={"invoice_id": str(invoice.pk)},
    )
    BillingRun.objects.create(run_date=DUE, status=BillingRun.Status.RUNNING)
    # when the run starts again for that day
    again = run(0)
    # then the charge is taken up once, not repeated
    intents = [
        o
        for o in stripe_standin.objects.values()
        if o["object"] == "payment_intent" and o["metadata"].get("invoice_id") == str(invoice.pk)
    ]
    assert len(intents) == 1
    assert again.attempts == 2 and again.status == BillingRun.Status.COMPLETED
    assert Payment.objects.filter(invoice=invoice, gateway="stripe").count() == 1
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    attempt.refresh_from_db()
    assert attempt.status == ChargeAttempt.Status.SUCCEEDED
    # and a third run charges nothing more
    assert run(0, force=True).counts.get("charges_succeeded", 0) == 0


def test_second_copy_is_refused_while_the_first_holds_the_lock(db_lock_holder):
    with pytest.raises(automation.RunLocked):
        run(0)
    assert not BillingRun.objects.exists()


@pytest.fixture
def db_lock_holder(db):
    db_settings = django_settings.DATABASES["default"]
    conn = psycopg.connect(
        host=db_settings["HOST"],
        port=db_settings["PORT"],
        user=db_settings["USER"],
        password=db_settings["PASSWORD"],
        dbname=db_settings["NAME"],
        autocommit=True,
    )
    conn.execute("SELECT pg_advisory_lock(%s)", [automation.LOCK_KEY])
    yield conn
    conn.execute("SELECT pg_advisory_unlock(%s)", [automation.LOCK_KEY])
    conn.close()


def test_renewals_use_credit_first_and_numbers_stay_gapless(
    owner, customer, plan, tax_rates, node, billing_settings
):
    services.credit_add(
        customer=customer, amount=Decimal("11.90"), currency="EUR", memo="goodwill", actor=owner
    )
    subs = [
        active_subscription(customer=customer, plan=plan, due=DUE, domain=f"s{i}.example.com")
        for i in range(3)
    ]
    assert run(-14).counts["renewal_invoices"] == 3
    invoices = list(Invoice.objects.filter(subscription__in=subs).order_by("number"))
    assert [i.number for i in invoices] == [f"INV-2026-{n:06d}" for n in (1, 2, 3)]
    assert [i.state for i in invoices].count(Invoice.State.PAID) == 1
    assert credit_balance(customer=customer, currency="EUR") == 0


def test_concurrent_issuing_leaves_no_gaps(customer, plan, tax_rates):
    # given eight checkouts at the same moment, one of which fails after taking its number
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def checkout(i: int) -> None:
        from django.db import connection, transaction

        try:
            barrier.wait()
            with transaction.atomic():
                services.order_place(
                    customer=customer, plan=plan, cycle="monthly", domain=f"c{i}.example.com"
                )
                if i == 3:
                    raise RuntimeError("payment page crashed")
        except RuntimeError:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=checkout, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then seven invoices carry exactly the numbers 1 to 7
    assert errors == []
    numbers = sorted(str(n) for n in Invoice.objects.values_list("number", flat=True))
    year = dt.date.today().year
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 8)]


def test_plan_change_prorates_by_day(
    owner, customer, plan, big_plan, tax_rates, node, billing_settings
):
    # given a monthly subscription from 10 March to 10 April (31 days) at 10 EUR
    sub = active_subscription(customer=customer, plan=plan, due=DUE)
    sub.period_start = dt.date(2026, 3, 10)
    sub.save(update_fields=["period_start"])
    with pytest.raises(services.BillingError, match="already on Starter"):
        services.subscription_change_plan(subscription=sub, plan=plan)
    # when the customer upgrades to the 30 EUR plan on 25 March (16 days left)
    invoice = services.subscription_change_plan(
        subscription=sub, plan=big_plan, actor=owner, today=dt.date(2026, 3, 25)
    )
    assert invoice is not None
    # then the invoice charges the new plan for 16/31 and credits the unused 16/31
    assert [line.amount for line in invoice.lines.all()] == [Decimal("15.48"), Decimal("-5.16")]
    assert invoice.subtotal == Decimal("10.32")
    # when it is paid, then the service moves to the new plan
    services.payment_record(invoice=invoice, amount=invoice.total, currency="EUR", gateway="manual")
    sub.refresh_from_db()
    assert sub.plan == big_plan and sub.amount == Decimal("30.00")
    op = Operation.objects.get(service=sub.service, kind="change_plan")
    assert op.params["plan_id"] == big_plan.pk
    # when they go back down a few days later, the difference becomes account credit
    engine_finishes(sub.service)
    Service.objects.filter(pk=sub.service_id).update(plan=big_plan)
    assert (
        services.subscription_change_plan(subscription=sub, plan=plan, today=dt.date(2026, 3, 30))
        is None
    )
    # 11 of 31 days left: 30 * 11/31 = 10.65 unused, 10 * 11/31 = 3.55 new, 7.10 net back,
    # through a credit note on the invoice that paid for it, with its 19% tax: 8.45
    assert credit_balance(customer=customer, currency="EUR") == Decimal("8.45")
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.subtotal, note.tax_total, note.disposition) == (
        Decimal("7.10"),
        Decimal("1.35"),
        CreditNote.Disposition.CREDIT,
    )


def test_command_runs_for_a_given_date(customer, plan, tax_rates, node, billing_settings, capsys):
    active_subscription(customer=customer, plan=plan, due=DUE)
    call_command("billing_run", "--date", str(day(-14)))
    out = capsys.readouterr().out
    assert "completed" in out and "renewal_invoices=1" in out
    assert Notice.objects.filter(kind="invoice_issued").count() == 1


def test_unpaid_order_is_reminded_then_cancelled(
    owner, customer, plan, tax_rates, billing_settings
):
    from billing.models import Coupon, Order

    coupon = Coupon.objects.create(code="HALF", kind="percent", value=Decimal("50"))
    order = services.order_place(
        customer=customer,
        plan=plan,
        cycle="monthly",
        domain="late.example.com",
        coupon_code="HALF",
        today=DUE,
    )
    # the day after: overdue and reminded, with words that fit an order
    assert run(1).counts["reminders"] == 1
    reminder = [m for m in mail.outbox if "is overdue" in str(m.subject)][-1]
    assert "set up as soon as it is paid" in str(reminder.body)
    # before the limit it stays open; after it, the order is cancelled and the coupon returned
    assert run(29).counts["orders_expired"] == 0
    assert run(30).counts["orders_expired"] == 1
    order.refresh_from_db()
    invoice = Invoice.objects.get(order=order)
    assert order.state == Order.State.VOID and invoice.state == Invoice.State.VOID
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 0
    assert run(31).counts["orders_expired"] == 0


def test_a_renewal_bills_the_plan_and_each_add_on_in_the_add_ons_order(
    customer, owner, plan, tax_rates, node, billing_settings, storage_addon
):
    # given a subscription of 14.00 a month with two add-ons, the second listed first
    from billing.models import Addon, AddonPrice

    ip = Addon.objects.create(name="Dedicated IP", slug="ip", kind="dedicated_ip", position=0)
    AddonPrice.objects.create(addon=ip, cycle="monthly", currency="EUR", amount=Decimal("1.50"))
    storage_addon.position = 1
    storage_addon.save(update_fields=["position"])
    sub = active_subscription(customer=customer, plan=plan, due=DUE, amount=Decimal("14.00"))
    sub.addons.set([storage_addon, ip])
    # and another due subscription without add-ons, renewed in the same batch
    plain = active_subscription(customer=customer, plan=plan, due=DUE, domain="two.example.com")

    # when the daily run renews them
    assert run(-14).counts["renewal_invoices"] == 2

    # then the plan line carries the amount less the add-ons, each add-on its price, in order
    lines = Invoice.objects.get(subscription=sub).lines.order_by("position")
    assert [(line.description.split(" (")[0], line.amount) for line in lines] == [
        (str(plan), Decimal("10.00")),
        ("Dedicated IP", Decimal("1.50")),
        ("Extra storage 10 GB", Decimal("2.50")),
    ]
    assert Invoice.objects.get(subscription=plain).lines.count() == 1
