"""Money helpers: two decimal places, half-up rounding, currencies that must match."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing.errors import BillingError

CENT = Decimal("0.01")


def money(value: Decimal | int | str) -> Decimal:
    """``value`` as an amount with two places, rounded half up (never from a float)."""
    if isinstance(value, float):
        raise TypeError("money is never a float")
    try:
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise BillingError(f"{value!r} is not an amount of money") from None


def check_amount(
    amount: Decimal, *, currency: str, expected_currency: str, allow_zero: bool = False
) -> Decimal:
    """Refuse negative (or zero) amounts and amounts in the wrong currency."""
    amount = money(amount)
    if currency.upper() != expected_currency.upper():
        raise BillingError(
            f"The amount is in {currency.upper()} but this is billed in "
            f"{expected_currency.upper()}."
        )
    if amount < 0 or (amount == 0 and not allow_zero):
        raise BillingError(f"The amount must be more than zero, not {amount}.")
    return amount


def to_minor_units(amount: Decimal) -> int:
    """Cents for the card processor (all our currencies have two decimal places)."""
    return int((money(amount) * 100).to_integral_value())


def from_minor_units(value: int) -> Decimal:
    return money(Decimal(value) / 100)
