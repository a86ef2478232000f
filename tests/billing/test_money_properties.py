"""Totals always add up, whatever the lines and the rate."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.money import from_minor_units, money, to_minor_units
from billing.selectors import LineSpec
from billing.services import invoice_totals
from billing.taxes import TaxDecision

amounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=2)
rates = st.sampled_from([Decimal(r) for r in ("0", "7", "7.7", "19", "20", "21", "25.5")])


@given(st.lists(amounts, min_size=1, max_size=12), rates)
def test_subtotal_plus_tax_is_the_total_and_tax_is_rounded_once(values, rate):
    lines = [LineSpec(f"line {i}", v) for i, v in enumerate(values)]
    subtotal, tax = invoice_totals(lines, TaxDecision(rate, False, ""))
    assert subtotal == sum(values, Decimal("0"))
    assert tax == money(subtotal * rate / 100)
    assert (subtotal + tax).as_tuple().exponent == -2


@given(amounts)
def test_cents_round_trip(value):
    assert from_minor_units(to_minor_units(value)) == value
