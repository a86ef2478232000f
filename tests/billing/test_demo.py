"""The demo catalog: prices for every plan and cycle, loaded twice without duplicates."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billing.demo import load_demo_catalog
from billing.models import Coupon, Price, TaxRate

pytestmark = pytest.mark.django_db


def test_demo_catalog_is_complete_and_idempotent():
    load_demo_catalog()
    load_demo_catalog()
    # five plans (three shared, two WordPress), each monthly and annual in EUR and USD
    assert Price.objects.count() == 5 * 4
    assert Price.objects.filter(plan__product__slug="wordpress-hosting").count() == 2 * 4
    assert Price.objects.get(plan__slug="starter", cycle="annual", currency="EUR").amount == 49
    assert TaxRate.objects.get(country="DE").rate == 19
    assert Coupon.objects.get(code="WELCOME20").times_redeemed == 0


def test_demo_setup_mentions_the_stand_in(capsys):
    call_command("demo_setup")
    out = capsys.readouterr().out
    assert "Stripe stand-in" in out and "4242" in out
