"""Account pages the panel adds: activity, and the active sessions list from allauth."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_active_sessions_lists_the_signed_in_browser(client, owner):
    # given the owner with a verified address, signed in through the login form
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    response = client.post(
        reverse("account_login"), {"login": owner.email, "password": "correct horse battery"}
    )
    assert response.status_code == 302 and "confirm" not in response["Location"]
    # when they open their sessions page
    page = client.get(reverse("usersessions_list"))
    # then it lists this session and offers to sign the others out, in the account layout
    body = page.content.decode()
    assert page.status_code == 200
    assert "Active sessions" in body and 'aria-label="Account"' in body
    from allauth.usersessions.models import UserSession

    assert UserSession.objects.filter(user=owner).count() == 1


def test_activity_page_is_the_customers_own(client, owner, stranger):
    from accounts.models import AuditLog, Customer

    Customer.objects.get(memberships__user=owner)
    client.force_login(stranger)
    body = client.get(reverse("panel:activity")).content.decode()
    assert "Olivia" not in body
    assert not AuditLog.objects.filter(action__startswith="panel.").exists()
