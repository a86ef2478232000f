"""The interfaces of the outside money systems (payment gateways, the VAT registry), and
the error they raise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class GatewayError(Exception):
    """The processor refused or failed. ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class ChargeResult:
    ok: bool
    external_id: str
    amount: Decimal
    currency: str
    error: str = ""
    payment_method_id: str = ""


class Gateway(Protocol):
    """Takes money for an invoice and gives it back."""

    name: str

    def charge(
        self,
        *,
        customer_ref: str,
        payment_method_ref: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> ChargeResult: ...

    def refund(
        self, *, payment_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> str: ...


@dataclass(frozen=True)
class VatCheckResult:
    """What the VAT registry answered about one id."""

    valid: bool
    request_date: dt.date
    consultation_number: str = ""
    name: str = ""
    address: str = ""


class VatGateway(Protocol):
    """Asks a registry whether a VAT id is registered. Raises ``GatewayError`` (not
    permanent) when the registry does not answer: that is no answer, not a "no"."""

    name: str

    def check(self, *, country: str, number: str) -> VatCheckResult: ...
