"""The staff customer page and "log in as this customer"."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.models import AuditLog
from accounts.roles import BILLING, SUPPORT_AGENT, sync_roles
from tests.factories import UserFactory
from tests.panel.conftest import make_operation, make_service
from tests.staff import sign_in_staff

pytestmark = pytest.mark.django_db


def staff_user(role: str | None = None, **extra):
    user = UserFactory.create(email=f"{role or 'root'}@staff.example", is_staff=True, **extra)
    if role:
        sync_roles()
        user.groups.add(Group.objects.get(name=role))
    TOTP.activate(user, generate_totp_secret())
    return user


def test_customer_page_shows_everything_at_once(client, owner, customer, plan, node):
    # given a customer with a service and a failed operation
    service = make_service(customer, plan, node, domain="everything.example.com")
    make_operation(service, state="rolled_back")
    sign_in_staff(client, staff_user(is_superuser=True))
    # when staff open the customer in the admin
    body = client.get(reverse("admin:accounts_customer_change", args=[customer.pk])).content
    text = body.decode()
    # then services, operations, invoices, payments, tickets and activity are on one page
    assert "everything.example.com" in text
    for heading in ("Services", "Operations", "Invoices", "Payments", "Tickets", "Recent activity"):
        assert f">{heading}</h2>" in text
    assert "Rolled back" in text
    assert "Log in as this customer" in text


def test_support_agent_impersonates_and_comes_back(client, owner, customer, plan, node):
    # given a support agent on the customer's admin page
    agent = staff_user(SUPPORT_AGENT)
    make_service(customer, plan, node, domain="helped.example.com")
    sign_in_staff(client, agent)
    url = reverse("admin:accounts_customer_impersonate", args=[customer.pk])
    # when they log in as the customer
    response = client.post(url)
    # then they land on the customer's dashboard, as the owner, with the staff banner
    assert response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "helped.example.com" in page
    assert "Staff view." in page and agent.email in page
    assert int(client.session["_auth_user_id"]) == owner.pk
    # and the customer's activity page shows it
    activity = client.get(reverse("panel:activity")).content.decode()
    assert "A member of staff signed in as olivia@example.com" in activity
    # when they end it / then they are back on the customer's admin page, as themselves
    response = client.post(reverse("panel:impersonation_stop"))
    assert response["Location"] == reverse("admin:accounts_customer_change", args=[customer.pk])
    assert int(client.session["_auth_user_id"]) == agent.pk
    assert "Staff view." not in client.get("/").content.decode()
    actions = list(
        AuditLog.objects.filter(customer=customer, action__startswith="panel.impersonation")
        .order_by("id")
        .values_list("action", "actor_id")
    )
    assert actions == [
        ("panel.impersonation.started", agent.pk),
        ("panel.impersonation.ended", agent.pk),
    ]


def test_billing_staff_may_not_impersonate(client, owner, customer):
    clerk = staff_user(BILLING)
    sign_in_staff(client, clerk)
    client.post(reverse("admin:accounts_customer_impersonate", args=[customer.pk]))
    assert int(client.session["_auth_user_id"]) == clerk.pk
    assert not AuditLog.objects.filter(action="panel.impersonation.started").exists()


def test_staff_owners_are_never_impersonated(client, customer):
    # given a customer whose owner is a member of staff
    from accounts.models import Membership

    other_staff = staff_user(is_superuser=True)
    Membership.objects.create(customer=customer, user=other_staff, role="owner")
    agent = staff_user(SUPPORT_AGENT)
    sign_in_staff(client, agent)
    # when an agent tries to log in as that customer / then they stay themselves
    client.post(reverse("admin:accounts_customer_impersonate", args=[customer.pk]))
    assert int(client.session["_auth_user_id"]) == agent.pk


def test_impersonation_is_post_only(client, owner, customer):
    sign_in_staff(client, staff_user(is_superuser=True))
    url = reverse("admin:accounts_customer_impersonate", args=[customer.pk])
    assert client.get(url).status_code == 405


def test_staff_acting_as_a_customer_cannot_change_their_sign_in(client, owner, customer):
    # given an agent signed in as the customer
    agent = staff_user(SUPPORT_AGENT)
    sign_in_staff(client, agent)
    client.post(reverse("admin:accounts_customer_impersonate", args=[customer.pk]))
    password_hash = owner.password
    # when they try to change the customer's password, e-mail or API tokens
    for url in (
        reverse("account_change_password"),
        reverse("account_email"),
        reverse("api_tokens"),
    ):
        response = client.post(url, {"oldpassword": "x", "password1": "y", "password2": "y"})
        # then each is refused, while looking is allowed
        assert response.status_code == 403, url
        assert client.get(url).status_code in (200, 302)
    owner.refresh_from_db()
    assert owner.password == password_hash


def test_customers_themselves_are_not_guarded(client, owner):
    client.force_login(owner)
    response = client.post(reverse("api_tokens"), {"name": "deploy"})
    assert response.status_code != 403
