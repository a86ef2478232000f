"""Money helpers: each currency's own decimal places, half-up rounding, currencies that match.

How many decimals a currency has comes from ISO 4217 (the ``MINOR_UNITS`` table): the yen has
none, the euro two, the Kuwaiti dinar three. Every rounding of an amount (invoice lines, tax,
proration, credit notes) and every conversion to the card processor's integer amounts goes
through this table, so 1000 JPY is sent as 1000 and 1.250 KWD as 1250.

The database stores three decimal places, enough for every currency in the table; see
``billing.models.MoneyField`` for how values read back.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing.errors import BillingError

# ISO 4217 minor units of the currencies we bill in. A currency missing here is refused
# rather than guessed: two decimals would be wrong for a third of the world's currencies.
MINOR_UNITS: dict[str, int] = {
    # none
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # two
    "AED": 2,
    "AUD": 2,
    "BGN": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "ILS": 2,
    "INR": 2,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "RON": 2,
    "RSD": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TRY": 2,
    "TWD": 2,
    "UAH": 2,
    "USD": 2,
    "ZAR": 2,
    # three
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}

# The most decimals any currency above has: what the database columns hold.
MAX_DECIMALS = 3


def minor_units(currency: str) -> int:
    """How many decimals ``currency`` has (ISO 4217), or a clear refusal for unknown codes."""
    try:
        return MINOR_UNITS[currency.upper()]
    except (KeyError, AttributeError):
        raise BillingError(f"{currency!r} is not a currency we bill in.") from None


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency``: 1 for JPY, 0.01 for EUR, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_units(currency))


def money(value: Decimal | int | str, currency: str) -> Decimal:
    """``value`` rounded half up to ``currency``'s decimals (never from a float)."""
    if isinstance(value, float):
        raise TypeError("money is never a float")
    try:
        return Decimal(value).quantize(quantum(currency), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise BillingError(f"{value!r} is not an amount of money") from None


def check_amount(
    amount: Decimal, *, currency: str, expected_currency: str, allow_zero: bool = False
) -> Decimal:
    """Refuse negative (or zero) amounts, amounts in the wrong currency, and amounts finer
    than the currency's smallest unit (0.5 JPY, 0.001 EUR): those are typing errors, not
    something to round silently."""
    if currency.upper() != expected_currency.upper():
        raise BillingError(
            f"The amount is in {currency.upper()} but this is billed in "
            f"{expected_currency.upper()}."
        )
    try:
        exact = Decimal(amount)
    except InvalidOperation:
        raise BillingError(f"{amount!r} is not an amount of money") from None
    if not exact.is_finite():
        raise BillingError(f"{amount!r} is not an amount of money")
    rounded = money(exact, currency)
    if rounded != exact:
        places = minor_units(currency)
        raise BillingError(
            f"{exact} {currency.upper()} has more than the {places} decimal"
            f"{'' if places == 1 else 's'} {currency.upper()} has."
        )
    if rounded < 0 or (rounded == 0 and not allow_zero):
        raise BillingError(f"The amount must be more than zero, not {rounded}.")
    return rounded


def to_minor_units(amount: Decimal, currency: str) -> int:
    """The integer the card processor expects: cents for EUR, yen for JPY, fils for KWD."""
    return int(money(amount, currency).scaleb(minor_units(currency)).to_integral_value())


def from_minor_units(value: int, currency: str) -> Decimal:
    return money(Decimal(int(value)).scaleb(-minor_units(currency)), currency)


def split_gross(gross: Decimal, *, rate: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """(net, tax) of a gross amount at ``rate`` percent; they add up to ``gross`` exactly."""
    gross = money(gross, currency)
    if rate == 0:
        return gross, money(0, currency)
    net = money(gross * 100 / (100 + rate), currency)
    return net, gross - net
