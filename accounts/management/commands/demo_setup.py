"""Prepare the demo: catalog, support desk, a staff administrator, a verified demo customer."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from accounts.roles import ADMINISTRATOR
from accounts.services import customer_create_for_signup
from billing.demo import load_demo_catalog
from support.demo import load_demo_support

DEMO_ADMIN = ("admin@hostwright.test", "demo-admin-password")
DEMO_CUSTOMER = ("customer@hostwright.test", "demo-customer-password")


class Command(BaseCommand):
    help = (
        "Load the demo catalog and support departments, and create the demo admin and "
        "customer (idempotent)."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        plans = load_demo_catalog()
        departments, replies = load_demo_support()
        admin = self._user(*DEMO_ADMIN, staff=True)
        admin.groups.add(Group.objects.get(name=ADMINISTRATOR))
        customer_user = self._user(*DEMO_CUSTOMER, staff=False)
        if not customer_user.memberships.exists():
            customer_create_for_signup(
                user=customer_user,
                name="Demo Customer",
                company="",
                country=settings.BILLING_SELLER_COUNTRY,
                currency=settings.DEFAULT_CURRENCY,
            )
        self.stdout.write(self.style.SUCCESS(f"Demo catalog: {len(plans)} plans"))
        self.stdout.write(f"Support desk: {departments} departments, {replies} canned replies")
        self.stdout.write(
            f"Card payments: Stripe stand-in at {settings.STRIPE_API_BASE} (not Stripe); "
            "card 4242 4242 4242 4242 pays, coupon WELCOME20 takes 20% off"
        )
        self.stdout.write(f"Demo admin:    {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
        self.stdout.write("               (staff set up two-factor on first visit to /admin/)")
        self.stdout.write(f"Demo customer: {DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]}")

    def _user(self, email: str, password: str, *, staff: bool) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            if staff:
                user = User.objects.create_superuser(email, password, full_name="Demo Admin")
            else:
                user = User.objects.create_user(email, password, full_name="Demo Customer")
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        return user
