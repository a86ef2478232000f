"""The interface every payment gateway offers, and the error it raises."""

from __future__ import annotations

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
