"""Staff members for tests: in a role, with a second factor, signed in as the admin wants."""

from __future__ import annotations

from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group
from django.test import Client

from accounts.middleware import SESSION_KEY
from accounts.models import User
from accounts.roles import sync_roles
from tests.factories import UserFactory


def make_staff(email: str, role: str | None = None, **extra: object) -> User:
    """A staff member in ``role`` (None: in no group) with TOTP set up."""
    user = UserFactory.create(email=email, is_staff=True, **extra)
    if role:
        sync_roles()
        user.groups.add(Group.objects.get(name=role))
    TOTP.activate(user, generate_totp_secret())
    return user


def sign_in_staff(client: Client, user: User) -> None:
    """Sign ``user`` in on ``client`` as if they had given their code at sign-in.

    (tests/accounts/test_staff_second_factor.py signs in through the real pages.)
    """
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = str(user.pk)
    session.save()
