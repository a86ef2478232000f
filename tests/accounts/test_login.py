from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.core.cache import cache
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _clear_rate_limits():
    cache.clear()
    yield
    cache.clear()


def verified_user(**kwargs):
    user = UserFactory(**kwargs)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def login(client: Client, email: str, password: str):
    return client.post("/accounts/login/", {"login": email, "password": password})


def test_login_with_email_and_password(client: Client) -> None:
    user = verified_user(email="lin@example.com")
    response = login(client, "LIN@example.com", PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_failed_logins_are_throttled_even_with_the_right_password(client: Client) -> None:
    # Given an account
    verified_user(email="target@example.com")
    # When someone guesses wrong five times
    for _ in range(5):
        response = login(client, "target@example.com", "wrong-guess")
        assert "not correct" in response.content.decode()
    # Then the sixth try is refused, even with the right password
    response = login(client, "target@example.com", PASSWORD)
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # And another account is not affected
    verified_user(email="other@example.com")
    assert login(Client(), "other@example.com", PASSWORD).status_code == 302


def test_staff_without_2fa_is_sent_to_set_it_up_before_the_admin(client: Client) -> None:
    # Given a staff member without an authenticator
    staff = verified_user(email="agent@example.com", is_staff=True)
    client.force_login(staff)
    # When they open the admin
    response = client.get("/admin/")
    # Then they are sent to set up TOTP instead
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/activate/"
    for path in ("/admin/accounts/customer/", "/admin/accounts/user/"):
        assert client.get(path)["Location"] == "/accounts/2fa/totp/activate/"
    # And once TOTP is active, the admin asks this session for a code before it opens
    TOTP.activate(staff, generate_totp_secret())
    assert client.get("/admin/")["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2F"


def current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def test_staff_with_2fa_logs_into_admin_with_password_then_code(client: Client) -> None:
    # Given a staff member with TOTP
    staff = verified_user(email="admin@example.com", is_staff=True, is_superuser=True)
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)
    # When they open the admin unauthenticated, they are sent to the allauth login
    response = client.get("/admin/", follow=False)
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    # When they give the password, they are asked for the code, not logged in yet
    response = login(client, staff.email, PASSWORD)
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    assert client.post("/accounts/2fa/authenticate/", {"code": "000000"}).status_code == 200
    assert "_auth_user_id" not in client.session
    # Then with the right code they are in and reach the admin
    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_customer_cannot_reach_admin(client: Client) -> None:
    user = verified_user(email="cust@example.com")
    client.force_login(user)
    response = client.get("/admin/")
    assert response["Location"] == "/admin/login/?next=/admin/"
    assert client.get(response["Location"]).status_code == 403
