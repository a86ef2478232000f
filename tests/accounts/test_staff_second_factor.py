"""Staff pages outside the admin (and the admin) need a session that passed the second factor.

Signing in happens through the real pages here (password, then the TOTP code), so what is
checked is the session allauth and the panel keep, not a flag set by the test.
"""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import AuditLog
from accounts.roles import SUPPORT_AGENT, sync_roles
from tests.accounts.test_login import PASSWORD, current_code, login
from tests.factories import CustomerFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_rate_limits():
    cache.clear()
    yield
    cache.clear()


def _verified_email(user) -> None:
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)


@pytest.fixture
def agent():
    user = UserFactory.create(email="sia.support@staff.example.com", is_staff=True)
    sync_roles()
    user.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    _verified_email(user)
    user.totp_secret = generate_totp_secret()  # type: ignore[attr-defined]
    TOTP.activate(user, user.totp_secret)  # type: ignore[attr-defined]
    return user


def _sign_in_with_code(client: Client, user) -> None:
    assert login(client, user.email, PASSWORD)["Location"] == "/accounts/2fa/authenticate/"
    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(user.totp_secret)})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


@override_settings(METRICS_TOKEN="scrape-me")
def test_metrics_answer_only_staff_sessions_that_passed_the_second_factor(client, agent):
    # given staff without TOTP, and staff with TOTP whose session never gave a code
    no_totp = UserFactory.create(email="nora.nototp@staff.example.com", is_staff=True)
    for user in (no_totp, agent):
        client.force_login(user)
        # when they ask for /metrics, then it is refused like an anonymous request
        assert client.get("/metrics").status_code == 401, user.email
    client.logout()
    # when the agent signs in with password and code, then the metrics answer
    _sign_in_with_code(client, agent)
    assert client.get("/metrics").status_code == 200
    # and a customer's session never does, the scraper's token always does
    client.force_login(UserFactory.create(email="cara.customer@example.com"))
    assert client.get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_a_session_without_a_code_is_asked_for_one_before_admin_and_sla(client, agent):
    # given an agent with TOTP whose session has not given a code
    client.force_login(agent)
    for path in ("/admin/", reverse("admin:support_ticket_sla")):
        # when they open an admin page, then they are asked for a code first
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(reverse("mfa_reauthenticate") + "?next=")
    # when they give a wrong code, then they are still kept out
    client.post(reverse("mfa_reauthenticate"), {"code": "000000"})
    assert client.get("/admin/").status_code == 302
    # when they give the right one, then they go on to the page they wanted
    response = client.post(
        f"{reverse('mfa_reauthenticate')}?next=/admin/support/ticket/sla/",
        {"code": current_code(agent.totp_secret)},
    )
    assert response["Location"] == "/admin/support/ticket/sla/"
    assert client.get("/admin/support/ticket/sla/").status_code == 200


# allauth tells of a new authenticator once its transaction commits, as in production
@pytest.mark.django_db(transaction=True)
def test_setting_totp_up_in_the_session_counts_as_giving_a_code(client):
    # given a new staff member who signs in with a password only
    staff = UserFactory.create(email="nina.new@staff.example.com", is_staff=True)
    _verified_email(staff)
    assert login(client, staff.email, PASSWORD).status_code == 302
    assert client.get("/admin/")["Location"] == reverse("mfa_activate_totp")
    assert client.get("/metrics").status_code == 401
    # when they set TOTP up with a code from their app (allauth asks for the password again)
    assert client.post(reverse("account_reauthenticate"), {"password": PASSWORD}).status_code == 302
    assert client.get("/admin/")["Location"] == reverse("mfa_activate_totp")
    assert client.get(reverse("mfa_activate_totp")).status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(reverse("mfa_activate_totp"), {"code": current_code(secret)})
    assert response.status_code == 302
    # then the admin and the metrics open for this session
    assert client.get("/admin/").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_impersonation_needs_the_second_factor_and_hands_it_back(client, agent):
    customer = CustomerFactory.create()
    MembershipFactory.create(customer=customer, user=UserFactory.create(email="o@example.com"))
    start = reverse("admin:accounts_customer_impersonate", args=[customer.pk])
    # given a session that has not given a code: the start is refused
    client.force_login(agent)
    client.post(start)
    assert client.session["_auth_user_id"] == str(agent.pk)
    assert not AuditLog.objects.filter(action="panel.impersonation.started").exists()
    # given a signed-in agent: they act as the customer and come back
    client.logout()
    _sign_in_with_code(client, agent)
    assert client.post(start)["Location"] == "/"
    assert client.session["_auth_user_id"] != str(agent.pk)
    # while acting as the customer the session is no staff session
    assert client.get("/metrics").status_code == 401
    client.post(reverse("panel:impersonation_stop"))
    # then, back as themselves, their session still counts as having given the code
    assert client.session["_auth_user_id"] == str(agent.pk)
    assert (
        client.get(reverse("admin:accounts_customer_change", args=[customer.pk])).status_code == 200
    )
