"""Reads concerning users and customers."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser

from accounts.models import Customer, User


def customer_for_user(*, user: User | AnonymousUser) -> Customer | None:
    """The customer a logged-in user acts for (the first one they belong to)."""
    if not user.is_authenticated:
        return None
    return Customer.objects.filter(memberships__user=user).order_by("memberships__id").first()
