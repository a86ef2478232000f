"""Totals always add up, in the currency's own decimals, whatever the lines, quantities and
rate; amounts reach the card processor in the currency's minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import BillingError
from billing.money import (
    check_amount,
    from_minor_units,
    minor_units,
    money,
    quantum,
    split_gross,
    to_minor_units,
)
from billing.selectors import LineSpec
from billing.services import invoice_totals
from billing.taxes import TaxDecision

# One currency of each kind: no decimals, two, three.
CURRENCIES = ["JPY", "EUR", "KWD"]
currencies = st.sampled_from(CURRENCIES)
rates = st.sampled_from([Decimal(r) for r in ("0", "7", "7.7", "19", "20", "21", "25.5")])
quantities = st.sampled_from([Decimal(q) for q in ("1", "2", "3", "0.5", "12", "1.25")])


def amounts_in(currency: str):
    return st.decimals(
        min_value=Decimal("0"), max_value=Decimal("100000"), places=minor_units(currency)
    )


@st.composite
def invoices(draw):
    currency = draw(currencies)
    lines = draw(st.lists(st.tuples(amounts_in(currency), quantities), min_size=1, max_size=12))
    return currency, lines


def test_the_table_knows_zero_two_and_three_decimal_currencies():
    assert [minor_units(c) for c in ("JPY", "KRW", "EUR", "USD", "KWD", "BHD")] == [
        0,
        0,
        2,
        2,
        3,
        3,
    ]
    assert quantum("JPY") == Decimal("1") and quantum("KWD") == Decimal("0.001")
    with pytest.raises(BillingError, match="not a currency we bill in"):
        minor_units("XXX")


@given(invoices(), rates)
def test_totals_add_up_in_the_currency_and_count_quantities(invoice, rate):
    currency, values = invoice
    lines = [LineSpec(f"line {i}", v, quantity=q) for i, (v, q) in enumerate(values)]
    subtotal, tax = invoice_totals(lines, TaxDecision(rate, False, ""), currency=currency)
    # each line is its unit price times its quantity, rounded once to the currency
    assert subtotal == sum((money(v * q, currency) for v, q in values), Decimal("0"))
    assert tax == money(subtotal * rate / 100, currency)
    # and nothing is finer than the currency's smallest unit
    for value in (subtotal, tax, subtotal + tax):
        assert value == value.quantize(quantum(currency))


@given(currencies.flatmap(lambda c: st.tuples(st.just(c), amounts_in(c))))
def test_minor_units_round_trip(pair):
    currency, value = pair
    units = to_minor_units(value, currency)
    assert units == int(value * 10 ** minor_units(currency))
    assert from_minor_units(units, currency) == value


@given(currencies.flatmap(lambda c: st.tuples(st.just(c), amounts_in(c))), rates)
def test_a_gross_amount_splits_into_net_and_tax_that_add_up(pair, rate):
    currency, gross = pair
    net, tax = split_gross(gross, rate=rate, currency=currency)
    assert net + tax == gross
    assert net == net.quantize(quantum(currency)) and tax == tax.quantize(quantum(currency))
    # the tax is the rate applied to the net, give or take the last unit
    assert abs(tax - net * rate / 100) <= quantum(currency)


@given(
    currencies,
    st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=6),
)
def test_rounding_is_half_up_to_the_currency(currency, value):
    rounded = money(value, currency)
    assert abs(rounded - value) <= quantum(currency) / 2
    assert rounded == rounded.quantize(quantum(currency))


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(Decimal("0.5"), "JPY"), (Decimal("1.001"), "EUR"), (Decimal("1.0001"), "KWD")],
)
def test_amounts_finer_than_the_currency_are_refused_not_rounded(amount, currency):
    with pytest.raises(BillingError, match="more than the"):
        check_amount(amount, currency=currency, expected_currency=currency)
    assert check_amount(
        money(amount, currency) or quantum(currency), currency=currency, expected_currency=currency
    )


def test_floats_are_refused():
    with pytest.raises(TypeError):
        money(1.1, "EUR")  # type: ignore[arg-type]
