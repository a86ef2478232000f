"""A visitor signs up in the middle of checkout and lands back on the order summary."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import mail

from billing.models import Order

pytestmark = pytest.mark.django_db


def test_signup_during_checkout_returns_to_the_summary(client, plan, tax_rates):
    # given a visitor with a plan and a domain chosen
    client.post("/order/starter/", {"domain": "newbie.example", "cycle": "monthly"})
    # when they sign up from the account step
    response = client.post(
        "/accounts/signup/?next=/checkout/",
        {
            "full_name": "Nina Newbie",
            # A fresh address: allauth limits confirmation mails per address in the shared cache.
            "email": f"nina-{uuid.uuid4().hex[:8]}@example.com",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
            "company": "",
            "country": "FR",
            "next": "/checkout/",
        },
    )
    assert response.status_code == 302
    # and confirm their address from the e-mail
    link = re.search(
        r"http://testserver(/accounts/confirm-email/[^\s]+)", str(mail.outbox[-1].body)
    )
    assert link is not None
    response = client.post(link.group(1))
    # then they are back at the summary, priced for France, and can place the order
    assert response["Location"] == "/checkout/"
    page = client.get("/checkout/").content.decode()
    assert "newbie.example" in page and "TVA 20% (FR)" in page
    client.post("/checkout/")
    assert Order.objects.get().customer.country == "FR"
