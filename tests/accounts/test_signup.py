from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.models import AuditLog, Customer, Membership, User

pytestmark = pytest.mark.django_db


def signup(client: Client, **overrides: str):
    data = {
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "password1": "analytical-engine-42",
        "password2": "analytical-engine-42",
        "company": "",
        "country": "GB",
    }
    data.update(overrides)
    return client.post("/accounts/signup/", data)


def test_signup_creates_user_customer_and_asks_to_verify_email(client: Client) -> None:
    # When a visitor signs up
    response = signup(client)
    # Then they are told to confirm their address and nothing else is open yet
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="ada@example.com")
    assert user.full_name == "Ada Lovelace"
    # And the customer (billing identity) exists with the user as owner
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.customer.country == "GB"
    assert membership.customer.name == "Ada Lovelace"
    assert AuditLog.objects.filter(action="customer.signup", customer=membership.customer).exists()
    # And a verification mail went out, with a link that confirms the address
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ada@example.com"]
    link = next(
        line for line in mail.outbox[0].body.splitlines() if "/accounts/confirm-email/" in line
    )
    path = link[link.index("/accounts/confirm-email/") :].strip()
    assert client.post(path).status_code == 302
    assert EmailAddress.objects.get(user=user).verified is True


def test_signup_rejects_duplicate_email_whatever_its_case(client: Client) -> None:
    # Given someone already signed up as ada@example.com
    signup(client)
    other = Client()
    # When another visitor signs up as ADA@Example.COM
    response = signup(other, email="ADA@Example.COM")
    # Then the form says the address is taken and nothing new is created
    assert response.status_code == 200
    assert "already registered" in response.content.decode()
    assert User.objects.count() == 1
    assert Customer.objects.count() == 1


def test_signup_rejects_weak_password_with_a_reason(client: Client) -> None:
    response = signup(client, password1="password", password2="password")
    body = response.content.decode()
    assert response.status_code == 200
    assert "too common" in body
    assert "too short" in body
    assert not User.objects.exists()


def test_signup_rejects_bad_email_and_bad_country(client: Client) -> None:
    response = signup(client, email="ada@@example", country="Germany")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid email address." in body
    assert "Select a valid choice. Germany is not one of the available choices." in body
    assert not User.objects.exists()


def test_email_is_stored_lowercase_and_unique_in_the_database() -> None:
    User.objects.create_user("Grace@Example.com", "x" * 12)
    assert User.objects.get().email == "grace@example.com"
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        user = User(email="other@example.com")
        user.save()
        User.objects.filter(pk=user.pk).update(email="GRACE@example.com")


def test_signup_during_a_checkout_keeps_the_steps_and_the_order(client: Client, settings) -> None:
    from tests.factories import PlanFactory

    # given a visitor who picked a plan and a domain
    PlanFactory.create(name="Starter", slug="starter")
    session = client.session
    session["billing_cart"] = {"plan": "starter", "cycle": "monthly", "domain": "ada.example"}
    session.save()

    # when they go on to sign up
    page = client.get("/accounts/signup/?next=/checkout/").content.decode()

    # then the checkout steps and their order are still in view
    assert 'aria-label="Checkout steps"' in page and 'aria-current="step">Your account' in page
    assert "Starter" in page and "ada.example" in page
    # and the country is a list of countries, starting at the seller's, not a text box
    assert '<select name="country"' in page
    assert f'<option value="{settings.BILLING_SELLER_COUNTRY}" selected>' in page
    assert '<option value="US">United States</option>' in page


def test_signup_without_a_checkout_shows_no_steps(client: Client) -> None:
    page = client.get("/accounts/signup/").content.decode()
    assert "Checkout steps" not in page and '<select name="country"' in page
