"""The role table's test acts on real invoices and card payments: billing's fixtures."""

from __future__ import annotations

from tests.billing.conftest import node, plan, stripe_server, stripe_standin, tax_rates

__all__ = ["node", "plan", "stripe_server", "stripe_standin", "tax_rates"]
