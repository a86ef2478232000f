"""Billing e-mails: invoice issued, payment received or failed, reminders, suspension, termination.

Every e-mail has a key; a ``Notice`` row with that key is written in the same transaction as
the change that caused it, and the message leaves only after commit. A repeated run finds the
key and sends nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import Customer, Membership
from billing.models import Notice

SUBJECTS = {
    "invoice_issued": "Invoice {number} for {total} {currency}",
    "payment_received": "Payment received for invoice {number}",
    "payment_failed": "We could not charge your card for invoice {number}",
    "reminder_before": "Invoice {number} is due on {due_date}",
    "reminder_after": "Invoice {number} is overdue",
    "suspended": "Your hosting for {domain} is suspended",
    "terminated": "Your hosting for {domain} has been closed",
    "unsuspended": "Your hosting for {domain} is back online",
}


@dataclass
class Mail:
    key: str
    customer_id: int
    kind: str
    context: dict[str, Any] = field(default_factory=dict)


def _owner_emails(customer_ids: set[int]) -> dict[int, list[str]]:
    emails: dict[int, list[str]] = defaultdict(list)
    rows = Membership.objects.filter(
        customer_id__in=customer_ids, role=Membership.Role.OWNER
    ).values_list("customer_id", "user__email")
    for customer_id, email in rows:
        emails[customer_id].append(email)
    return emails


def notify_many(mails: list[Mail]) -> int:
    """Record and (after commit) send these e-mails, skipping keys already sent. Returns count."""
    if not mails:
        return 0
    keys = [mail.key for mail in mails]
    done = set(Notice.objects.filter(key__in=keys).values_list("key", flat=True))
    fresh = [mail for mail in mails if mail.key not in done]
    if not fresh:
        return 0
    subjects = {
        mail.key: f"[{settings.HOSTING_BRAND}] " + SUBJECTS[mail.kind].format(**mail.context)
        for mail in fresh
    }
    Notice.objects.bulk_create(
        [
            Notice(key=m.key, customer_id=m.customer_id, kind=m.kind, subject=subjects[m.key])
            for m in fresh
        ]
    )
    recipients = _owner_emails({mail.customer_id for mail in fresh})
    messages = []
    for mail in fresh:
        to = recipients.get(mail.customer_id)
        if not to:
            continue
        context = {**mail.context, "brand": settings.HOSTING_BRAND, "site_url": settings.SITE_URL}
        body = render_to_string(f"billing/email/{mail.kind}.txt", context)
        messages.append(EmailMessage(subjects[mail.key], body, to=to))

    def send() -> None:
        get_connection(fail_silently=True).send_messages(messages)

    transaction.on_commit(send)
    return len(fresh)


def notify(*, key: str, customer: Customer, kind: str, **context: Any) -> bool:
    return notify_many([Mail(key=key, customer_id=customer.pk, kind=kind, context=context)]) == 1
