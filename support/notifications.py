"""E-mails about ticket messages: to the department and agent, or to the customer.

Only the message being announced goes into an e-mail, and internal notes are
never announced, so nothing staff wrote for each other can leave by mail.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from support.models import MessageKind, TicketMessage


def _staff_recipients(message: TicketMessage) -> list[str]:
    ticket = message.ticket
    recipients = [ticket.department.email]
    if ticket.assigned_to is not None and ticket.assigned_to.is_active:
        recipients.append(ticket.assigned_to.email)
    return list(dict.fromkeys(r for r in recipients if r))


def _customer_recipients(message: TicketMessage) -> list[str]:
    # The person who opened the ticket and the customer's owners; teammates see
    # the ticket in the panel but are not all mailed about it.
    ticket = message.ticket
    emails = []
    if ticket.opened_by is not None and ticket.opened_by.is_active:
        emails.append(ticket.opened_by.email)
    emails += list(
        Membership.objects.filter(
            customer_id=ticket.customer_id, role=Membership.Role.OWNER, user__is_active=True
        ).values_list("user__email", flat=True)
    )
    return list(dict.fromkeys(emails))


def build_email(message: TicketMessage) -> EmailMessage | None:
    """The e-mail announcing ``message``, or None when nobody is to be told."""
    if message.kind == MessageKind.NOTE:
        return None
    ticket = message.ticket
    first_id = ticket.messages.order_by("created_at", "id").values_list("pk", flat=True).first()
    is_first = first_id == message.pk
    context = {
        "ticket": ticket,
        "message": message,
        "is_first": is_first,
        "brand": settings.HOSTING_BRAND,
        "site_url": settings.SITE_URL,
        "attachment_names": [a.original_name for a in message.attachments.all()],
    }
    if message.kind == MessageKind.CUSTOMER:
        recipients = _staff_recipients(message)
        context["url"] = settings.SITE_URL + reverse(
            "admin:support_ticket_change", args=[ticket.pk]
        )
        template = "support/emails/to_staff.txt"
        prefix = "New ticket" if is_first else "Customer reply"
        subject = f"[{ticket.reference}] {prefix}: {ticket.subject}"
        reply_to: list[str] = []
    else:
        recipients = _customer_recipients(message)
        context["url"] = settings.SITE_URL + reverse("support:ticket", args=[ticket.pk])
        template = "support/emails/to_customer.txt"
        subject = f"[{ticket.reference}] {ticket.subject}"
        reply_to = [ticket.department.email]
    if not recipients:
        return None
    return EmailMessage(
        subject=subject.replace("\n", " ").replace("\r", " "),
        body=render_to_string(template, context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        reply_to=reply_to,
    )


def notify_message(*, message_id: int) -> bool:
    """Send the e-mail for one message once; False when there was nothing to send.

    The row lock and ``notified_at`` make a second run (a retried task) a no-op;
    when sending fails the transaction rolls back and a retry sends again.
    """
    with transaction.atomic():
        message = (
            TicketMessage.objects.select_for_update(of=("self",))
            .select_related("ticket__department", "ticket__assigned_to", "ticket__opened_by")
            .filter(pk=message_id, notified_at__isnull=True)
            .first()
        )
        if message is None:
            return False
        email = build_email(message)
        if email is not None:
            email.send()
        message.notified_at = timezone.now()
        message.save(update_fields=["notified_at"])
        return email is not None
