"""Errors billing raises on bad input: each carries a sentence a customer or agent can act on."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class BillingError(ValidationError):
    """A request billing refuses (bad amount, wrong currency, exhausted coupon, ...)."""


class UnknownObject(BillingError):
    """A processor event names something this system does not know."""
