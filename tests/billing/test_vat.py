"""VAT ids: format and check digits first, then VIES (its local stand-in); reverse charge only
for a confirmed id, recorded on the invoice; a failed check charges VAT and says why."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from accounts.models import AuditLog
from billing import services
from billing.automation import billing_run
from billing.errors import BillingError
from billing.models import Invoice, TaxIdCheck
from billing.vat import customer_tax_identity_change, tax_id_recheck_run, vat_id_compact

pytestmark = pytest.mark.django_db

REGISTERED = "FR40303265045"  # in the stand-in's register
UNREGISTERED = "DE100000008"  # valid check digits, not registered


@pytest.fixture
def business(customer, tax_rates, settings):
    settings.BILLING_SELLER_COUNTRY = "DE"
    customer.company, customer.country = "Exemple Web SARL", "FR"
    customer.save()
    return customer


def order_invoice(customer, plan, domain="vat.example.com") -> Invoice:
    order = services.order_place(customer=customer, plan=plan, cycle="monthly", domain=domain)
    return Invoice.objects.get(order=order)


@pytest.mark.parametrize(
    ("country", "typed", "message"),
    [
        ("FR", "FR40303265046", "check digits are wrong"),
        ("DE", "DE13669597", "check its format"),
        ("DE", REGISTERED, "starts with DE"),
        ("FR", "<script>", "check its format"),
        ("GR", "GR094259216", "starts with EL"),
    ],
)
def test_malformed_ids_are_refused_before_vies_is_asked(
    business, vies_standin, country, typed, message
):
    asked = len(vies_standin.requests)
    with pytest.raises(BillingError, match=message):
        customer_tax_identity_change(customer=business, country=country, tax_id=typed, actor=None)
    # then nothing changed and VIES was not bothered
    business.refresh_from_db()
    assert (business.country, business.tax_id) == ("FR", "")
    assert len(vies_standin.requests) == asked
    assert not TaxIdCheck.objects.exists()


def test_ids_are_kept_in_their_compact_form():
    assert vat_id_compact(country="FR", raw="fr 40 303 265 045") == REGISTERED
    assert vat_id_compact(country="FR", raw="40303265045") == REGISTERED
    assert vat_id_compact(country="NL", raw="NL 0044.95.445.B01") == "NL004495445B01"


def test_a_confirmed_id_gives_reverse_charge_recorded_on_the_invoice(business, plan, vies_standin):
    # when the customer enters a registered id
    check = customer_tax_identity_change(
        customer=business, country="FR", tax_id="FR 40 303 265 045", actor=None
    )
    # then VIES was asked with the seller as requester, and the answer is on record
    assert check is not None and check.status == TaxIdCheck.Status.VALID
    sent = vies_standin.requests[-1]
    assert (sent["countryCode"], sent["vatNumber"]) == ("FR", "40303265045")
    assert (sent["requesterMemberStateCode"], sent["requesterNumber"]) == ("DE", "136695976")
    assert check.consultation_number.startswith("WAPI")
    assert check.request_date == dt.date.today() and check.registered_name == "Exemple Web SARL"
    business.refresh_from_db()
    assert business.tax_id == REGISTERED
    # and the order's invoice is reverse charged, naming the check, its date and number
    invoice = order_invoice(business, plan)
    assert invoice.reverse_charge and invoice.tax_total == 0
    assert invoice.tax_check == check
    assert check.consultation_number in invoice.tax_note
    assert f"{check.request_date:%Y-%m-%d}" in invoice.tax_note


def test_an_id_vies_does_not_know_is_refused(business, vies_standin):
    business.country = "DE"
    business.save()
    with pytest.raises(BillingError, match="does not list DE100000008"):
        customer_tax_identity_change(
            customer=business, country="DE", tax_id=UNREGISTERED, actor=None
        )
    business.refresh_from_db()
    assert business.tax_id == ""
    # the refusal is on record too
    assert TaxIdCheck.objects.get().status == TaxIdCheck.Status.INVALID


def test_vies_down_charges_vat_says_why_and_is_checked_again(
    client, owner, business, plan, vies_standin, billing_settings
):
    # given France's VIES service down when the customer enters the id
    vies_standin.unavailable.add("FR")
    check = customer_tax_identity_change(
        customer=business, country="FR", tax_id=REGISTERED, actor=owner
    )
    # then the id is kept, unconfirmed
    assert check is not None and check.status == TaxIdCheck.Status.UNAVAILABLE
    assert "MS_UNAVAILABLE" in check.message
    # and the order charges French VAT with the reason on the invoice
    invoice = order_invoice(business, plan)
    assert not invoice.reverse_charge and invoice.tax_rate == Decimal("20.00")
    assert invoice.tax_total == Decimal("2.00") and invoice.tax_check == check
    assert "could not be asked" in invoice.tax_note
    # and the checkout page tells the customer before they pay
    client.force_login(owner)
    session = client.session
    session["billing_cart"] = {
        "plan": plan.slug,
        "cycle": "monthly",
        "domain": "x.example.com",
        "addons": [],
        "coupon": "",
    }
    session.save()
    page = client.get("/checkout/")
    assert page.status_code == 200
    assert "could not be asked about FR40303265045" in page.content.decode()
    # when the service is back, the next day's run confirms the id (once)
    vies_standin.unavailable.clear()
    today = dt.date.today()
    assert tax_id_recheck_run(today=today) == 0  # asked today already
    assert tax_id_recheck_run(today=today + dt.timedelta(days=1)) == 1
    assert tax_id_recheck_run(today=today + dt.timedelta(days=1)) == 0
    latest = TaxIdCheck.objects.filter(customer=business).first()
    assert latest is not None and latest.status == TaxIdCheck.Status.VALID
    # and the next invoice is reverse charged
    second = order_invoice(business, plan, domain="vat2.example.com")
    assert second.reverse_charge and second.tax_check == latest
    # while the first one, issued, is unchanged
    invoice.refresh_from_db()
    assert invoice.tax_total == Decimal("2.00")


def test_the_daily_run_rechecks_unconfirmed_ids(business, vies_standin, billing_settings):
    vies_standin.unavailable.add("FR")
    customer_tax_identity_change(customer=business, country="FR", tax_id=REGISTERED, actor=None)
    vies_standin.unavailable.clear()
    run = billing_run(today=dt.date.today() + dt.timedelta(days=1))
    assert run.counts["vat_ids_checked"] == 1


def test_an_id_typed_into_the_record_without_a_check_never_gives_reverse_charge(
    business, plan, vies_standin
):
    # given a valid check of one id, then the id replaced behind the rule's back
    customer_tax_identity_change(customer=business, country="FR", tax_id=REGISTERED, actor=None)
    business.tax_id = "FR00000000000"
    business.save(update_fields=["tax_id"])
    # then the old check does not carry over: VAT is charged
    invoice = order_invoice(business, plan)
    assert not invoice.reverse_charge and invoice.tax_rate == Decimal("20.00")
    assert "not a valid VAT id" in invoice.tax_note or "not been confirmed" in invoice.tax_note


def test_the_country_is_fixed_for_customers_once_invoiced(
    client, owner, business, plan, vies_standin
):
    # given a customer with an invoice
    order_invoice(business, plan)
    # when they try to move to a country with a lower rate, then it is refused
    with pytest.raises(BillingError, match="Write to support"):
        customer_tax_identity_change(customer=business, country="DE", tax_id="", actor=owner)
    # and the settings form ignores a forged country field
    client.force_login(owner)
    page = client.get("/account/")
    assert "write to support" in page.content.decode()
    response = client.post(
        "/account/",
        {"name": business.name, "country": "US", "tax_id": "", "company": "Exemple Web SARL"},
    )
    assert response.status_code == 302
    business.refresh_from_db()
    assert business.country == "FR"
    # while staff may change it (and the id is checked again for the new country)
    check = customer_tax_identity_change(
        customer=business, country="AT", tax_id="ATU13585627", actor=None, by_staff=True
    )
    assert check is not None and check.is_valid
    business.refresh_from_db()
    assert (business.country, business.tax_id) == ("AT", "ATU13585627")
    assert AuditLog.objects.filter(action="billing.tax_identity_changed").count() == 1


def test_the_settings_page_refuses_a_forged_id_and_keeps_the_old_one(
    client, owner, business, vies_standin
):
    customer_tax_identity_change(customer=business, country="FR", tax_id=REGISTERED, actor=None)
    client.force_login(owner)
    response = client.post(
        "/account/",
        {"name": business.name, "country": "FR", "tax_id": "FR12345678901", "company": "X"},
    )
    assert response.status_code == 200
    assert "is not a valid VAT id" in response.content.decode()
    business.refresh_from_db()
    assert business.tax_id == REGISTERED and business.company == "Exemple Web SARL"
    # and a registered id is confirmed on the page
    response = client.post(
        "/account/",
        {"name": business.name, "country": "FR", "tax_id": "fr40303265045", "company": "X"},
        follow=True,
    )
    assert "VIES confirmed your VAT id FR40303265045" in response.content.decode()


def test_outside_the_eu_the_tax_id_is_kept_as_written(business, vies_standin):
    check = customer_tax_identity_change(
        customer=business, country="US", tax_id="12-3456789", actor=None
    )
    assert check is None
    business.refresh_from_db()
    assert (business.country, business.tax_id) == ("US", "12-3456789")


def test_the_demo_runs_the_vies_standin_and_the_gateway_talks_to_it(settings, tmp_path):
    """The stand-in as ``rundemo`` starts it (its own process, on the configured port)."""
    import socket
    import time

    from accounts.management.commands.rundemo import demo_children
    from billing.gateways.vies import ViesGateway

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.VIES_API_BASE = f"http://127.0.0.1:{port}"
    settings.VAR_DIR = tmp_path
    settings.BILLING_SELLER = {**settings.BILLING_SELLER, "tax_id": "DE136695976"}
    (child,) = [c for c in demo_children(addr="127.0.0.1:8000") if c.name == "vies-standin"]
    assert child.argv[-2:] == ["--port", str(port)]
    child.start()
    assert child.proc is not None
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        result = ViesGateway().check(country="NL", number="004495445B01")
        assert result.valid and result.consultation_number.startswith("WAPI")
        assert not ViesGateway().check(country="NL", number="004495445B02").valid
    finally:
        child.proc.terminate()
        child.proc.wait(timeout=10)
