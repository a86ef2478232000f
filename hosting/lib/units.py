"""One way to write sizes for people, used by every page (the ``mb`` template filter)."""

from __future__ import annotations

from decimal import Decimal


def format_mb(value: float | int | Decimal | None) -> str:
    """Megabytes as the panel writes them everywhere: ``5,000 MB``, ``12 MB``, ``0.4 MB``."""
    if value is None:
        return ""
    number = float(value)
    if 0 < number < 1:
        return f"{number:.1f} MB"
    return f"{round(number):,} MB"


def format_quantity(value: float | int | Decimal, unit: str) -> str:
    """A measured or allowed amount in its unit, grouped by thousands like ``format_mb``."""
    if unit == "MB":
        return format_mb(value)
    number = float(value)
    text = f"{number:,.2f}".rstrip("0").rstrip(".") if number % 1 else f"{round(number):,}"
    return f"{text} {unit}"
