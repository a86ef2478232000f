"""``{% load units %}``: sizes and domain names written the same way on every page."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from hosting.lib.units import format_mb

register = template.Library()


@register.filter
def mb(value: float | int | Decimal | None) -> str:
    """``{{ plan.disk_mb|mb }}`` -> ``5,000 MB``."""
    return format_mb(value)


@register.filter
def breakable_domain(value: str) -> SafeString:
    """A domain that may wrap after its dots only, never inside a label (``<wbr>``)."""
    return mark_safe(".<wbr>".join(escape(label) for label in str(value).split(".")))  # noqa: S308
