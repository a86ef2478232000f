"""Writes: orders, invoices, payments, credit, credit notes, refunds, subscriptions, cards.

Every function that changes state runs in one transaction, locks the rows it moves, checks
their state again after the lock, and leaves calls to other systems (the provisioning engine's
queue, e-mail) until after commit. The functions live in the modules of this package and are
all importable from here.
"""

from __future__ import annotations

from billing.errors import BillingError
from billing.selectors import LineSpec
from billing.services.cards import (
    card_setup_start,
    invoice_checkout_start,
    payment_method_save,
    stripe_customer_ref,
)
from billing.services.invoices import (
    _credit_apply,
    _invoice_settle,
    bill_to,
    credit_add,
    credit_note_issue,
    document_numbers_allocate,
    invoice_collect,
    invoice_create,
    invoice_totals,
    payment_record,
    payment_refund,
)
from billing.services.orders import clean_domain, order_fulfil, order_fulfil_quietly, order_place
from billing.services.subscriptions import (
    subscription_cancel,
    subscription_change_plan,
    subscription_plan_apply,
    subscription_plan_apply_quietly,
    subscription_restore,
    subscription_restore_quietly,
    subscription_terminate,
)

__all__ = [
    "BillingError",
    "LineSpec",
    "_credit_apply",
    "_invoice_settle",
    "bill_to",
    "card_setup_start",
    "clean_domain",
    "credit_add",
    "credit_note_issue",
    "document_numbers_allocate",
    "invoice_checkout_start",
    "invoice_collect",
    "invoice_create",
    "invoice_totals",
    "order_fulfil",
    "order_fulfil_quietly",
    "order_place",
    "payment_method_save",
    "payment_record",
    "payment_refund",
    "stripe_customer_ref",
    "subscription_cancel",
    "subscription_change_plan",
    "subscription_plan_apply",
    "subscription_plan_apply_quietly",
    "subscription_restore",
    "subscription_restore_quietly",
    "subscription_terminate",
]
