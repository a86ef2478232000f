"""What a hosting company's support desk starts with, for the demo: departments and replies."""

from __future__ import annotations

from django.db import transaction

from support.models import CannedReply, Department

DEPARTMENTS = (
    ("Technical support", "support@hostwright.test"),
    ("Billing", "billing@hostwright.test"),
    ("Sales", "sales@hostwright.test"),
)

# (title, department or None for all, body)
CANNED_REPLIES = (
    (
        "Looking into it",
        None,
        "Thank you for writing. We are looking into this now and will write again as soon "
        "as we know more.",
    ),
    (
        "Change rolled back: what to do",
        "Technical support",
        "The change you asked for could not finish, so everything it had done was undone and "
        "your site is as it was before. The reason is shown on your service page; once it is "
        "fixed, start the change again from there. If the reason is unclear, reply here.",
    ),
    (
        "DNS takes time",
        "Technical support",
        "Your DNS change is live on our name servers. Resolvers elsewhere may keep the old "
        "answer for up to the record's TTL; after that everyone sees the new one.",
    ),
    (
        "Payment received",
        "Billing",
        "Thank you: your payment is in and the invoice is marked paid. Nothing else to do.",
    ),
    (
        "Card declined",
        "Billing",
        "Your bank declined the card payment. You can pay the invoice with another card from "
        "Billing, Invoices; your services keep running during the grace days.",
    ),
)


@transaction.atomic
def load_demo_support() -> tuple[int, int]:
    """Create the demo's departments and canned replies if missing (idempotent)."""
    departments = {}
    for position, (name, email) in enumerate(DEPARTMENTS):
        departments[name], _ = Department.objects.get_or_create(
            name=name, defaults={"email": email, "position": position}
        )
    for title, department, body in CANNED_REPLIES:
        CannedReply.objects.get_or_create(
            title=title,
            department=departments[department] if department else None,
            defaults={"body": body},
        )
    return len(departments), len(CANNED_REPLIES)
