"""Writes of the support desk: opening tickets, replies, notes, state changes, autoclose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import audit_record
from provisioning.models import Service
from support.attachments import CheckedFile, max_files
from support.models import (
    Attachment,
    Department,
    MessageKind,
    Ticket,
    TicketMessage,
    TicketPriority,
    TicketState,
)

DEFAULT_AUTOCLOSE_DAYS = 7


def autoclose_days() -> int:
    return int(getattr(settings, "SUPPORT_AUTOCLOSE_DAYS", DEFAULT_AUTOCLOSE_DAYS))


def _lock(ticket: Ticket) -> Ticket:
    # Always transition a fresh, locked copy: the caller's instance may be stale.
    return Ticket.objects.select_for_update().get(pk=ticket.pk)


def _queue_notification(message: TicketMessage) -> None:
    from support.tasks import notify_ticket_message

    message_id = message.pk
    transaction.on_commit(lambda: notify_ticket_message.delay(message_id))


def _add_message(
    *,
    ticket: Ticket,
    kind: MessageKind,
    author: User | None,
    body: str,
    files: Sequence[CheckedFile],
    at: datetime,
) -> TicketMessage:
    body = body.strip()
    if not body:
        raise ValidationError("A message cannot be empty.")
    if len(files) > max_files():
        raise ValidationError(f"At most {max_files()} files can be attached to one message.")
    message = TicketMessage.objects.create(
        ticket=ticket, kind=kind, author=author, body=body, created_at=at
    )
    for checked in files:
        Attachment.objects.create(
            message=message,
            file=checked.upload,
            original_name=checked.name,
            content_type=checked.content_type,
            size=checked.size,
            created_at=at,
        )
    return message


def _transition(
    *,
    ticket: Ticket,
    method: Callable[..., None],
    at: datetime,
    actor: User | None,
    reason: str,
) -> None:
    """Run one FSM transition on a locked ticket, save it and write the audit row."""
    before = ticket.state
    method(at=at)
    ticket.save(
        update_fields=["state", "updated_at", "first_response_at", "resolved_at", "closed_at"]
    )
    if before != ticket.state:
        audit_record(
            action="support.ticket_state_changed",
            actor=actor,
            target=ticket,
            customer=ticket.customer,
            detail={"from": before, "to": ticket.state, "reason": reason},
        )


@transaction.atomic
def ticket_open(
    *,
    customer: Customer,
    user: User,
    department: Department,
    subject: str,
    body: str,
    priority: str = TicketPriority.NORMAL,
    files: Sequence[CheckedFile] = (),
    service_id: int | None = None,
    at: datetime | None = None,
) -> Ticket:
    """Open a ticket for ``customer`` with its first message, and tell the department.

    ``service_id`` must be one of the customer's own services; the caller (a
    form scoped to the customer) has checked that.
    """
    at = at or timezone.now()
    if not department.is_active:
        raise ValidationError("This department does not take new tickets.")
    ticket = Ticket(
        customer=customer,
        department=department,
        subject=subject.strip(),
        priority=TicketPriority(priority),
        opened_by=user,
        created_at=at,
        updated_at=at,
    )
    if service_id is not None:
        # Re-checked here too: a ticket never points at another customer's service.
        if not Service.objects.filter(pk=service_id, customer=customer).exists():
            raise ValidationError({"service": "Choose one of your own services."})
        ticket.service_id = service_id
    ticket.full_clean(exclude=["state"])
    ticket.save()
    message = _add_message(
        ticket=ticket, kind=MessageKind.CUSTOMER, author=user, body=body, files=files, at=at
    )
    audit_record(
        action="support.ticket_opened",
        actor=user,
        target=ticket,
        customer=customer,
        detail={"department": department.name, "priority": ticket.priority},
    )
    _queue_notification(message)
    return ticket


@transaction.atomic
def ticket_reply_customer(
    *,
    ticket: Ticket,
    user: User,
    body: str,
    files: Sequence[CheckedFile] = (),
    at: datetime | None = None,
) -> TicketMessage:
    """A customer's reply: the ticket awaits staff again (a resolved one reopens)."""
    at = at or timezone.now()
    ticket = _lock(ticket)
    if ticket.state == TicketState.CLOSED:
        raise ValidationError("This ticket is closed. Please open a new ticket.")
    message = _add_message(
        ticket=ticket, kind=MessageKind.CUSTOMER, author=user, body=body, files=files, at=at
    )
    _transition(
        ticket=ticket, method=ticket.customer_replied, at=at, actor=user, reason="customer reply"
    )
    _queue_notification(message)
    return message


@transaction.atomic
def ticket_reply_staff(
    *,
    ticket: Ticket,
    user: User,
    body: str,
    files: Sequence[CheckedFile] = (),
    resolve: bool = False,
    at: datetime | None = None,
) -> TicketMessage:
    """A staff reply the customer sees and is e-mailed; optionally resolves the ticket.

    The first one sets the ticket's first-response time.
    """
    at = at or timezone.now()
    ticket = _lock(ticket)
    if ticket.state == TicketState.CLOSED:
        raise ValidationError("This ticket is closed; it cannot be answered any more.")
    message = _add_message(
        ticket=ticket, kind=MessageKind.STAFF, author=user, body=body, files=files, at=at
    )
    _transition(ticket=ticket, method=ticket.staff_replied, at=at, actor=user, reason="staff reply")
    if resolve:
        _transition(ticket=ticket, method=ticket.resolve, at=at, actor=user, reason="staff reply")
    audit_record(
        action="support.ticket_staff_reply",
        actor=user,
        target=ticket,
        customer=ticket.customer,
        detail={"message": message.pk, "attachments": len(files), "resolved": resolve},
    )
    _queue_notification(message)
    return message


@transaction.atomic
def ticket_add_note(
    *,
    ticket: Ticket,
    user: User,
    body: str,
    files: Sequence[CheckedFile] = (),
    at: datetime | None = None,
) -> TicketMessage:
    """An internal note: staff only, changes no state, e-mails nobody outside staff."""
    at = at or timezone.now()
    ticket = _lock(ticket)
    message = _add_message(
        ticket=ticket, kind=MessageKind.NOTE, author=user, body=body, files=files, at=at
    )
    audit_record(
        action="support.ticket_note",
        actor=user,
        target=ticket,
        customer=ticket.customer,
        detail={"message": message.pk},
    )
    return message


@transaction.atomic
def ticket_resolve(*, ticket: Ticket, actor: User, at: datetime | None = None) -> Ticket:
    """Mark a ticket resolved (by staff, or by the customer when their problem is gone)."""
    at = at or timezone.now()
    ticket = _lock(ticket)
    if ticket.state not in (
        TicketState.OPEN,
        TicketState.AWAITING_STAFF,
        TicketState.AWAITING_CUSTOMER,
    ):
        raise ValidationError(f"A ticket that is {ticket.get_state_display()} cannot be resolved.")
    _transition(ticket=ticket, method=ticket.resolve, at=at, actor=actor, reason="resolved")
    return ticket


@transaction.atomic
def ticket_close(*, ticket: Ticket, actor: User | None, at: datetime | None = None) -> Ticket:
    """Close a ticket for good; a closed ticket takes no more replies."""
    at = at or timezone.now()
    ticket = _lock(ticket)
    if ticket.state == TicketState.CLOSED:
        return ticket
    _transition(ticket=ticket, method=ticket.close, at=at, actor=actor, reason="closed")
    return ticket


@transaction.atomic
def ticket_assign(*, ticket: Ticket, actor: User, assignee: User | None) -> Ticket:
    """Give a ticket to a member of staff (or to nobody)."""
    if assignee is not None and not assignee.is_staff:
        raise ValidationError("Tickets can only be assigned to staff.")
    ticket = _lock(ticket)
    if ticket.assigned_to_id == (assignee.pk if assignee else None):
        return ticket
    before = ticket.assigned_to.email if ticket.assigned_to else None
    ticket.assigned_to = assignee
    ticket.save(update_fields=["assigned_to"])
    audit_record(
        action="support.ticket_assigned",
        actor=actor,
        target=ticket,
        customer=ticket.customer,
        detail={"from": before, "to": assignee.email if assignee else None},
    )
    return ticket


def tickets_autoclose(*, now: datetime | None = None, days: int | None = None) -> int:
    """Close tickets resolved at least ``days`` ago; returns how many were closed.

    Safe to run twice or concurrently: each ticket is locked and re-checked in
    its own transaction, and rows another run holds are skipped.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=autoclose_days() if days is None else days)
    due = list(
        Ticket.objects.filter(state=TicketState.RESOLVED, resolved_at__lte=cutoff)
        .order_by("resolved_at")
        .values_list("pk", flat=True)
    )
    closed = 0
    for pk in due:
        with transaction.atomic():
            ticket = (
                Ticket.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, state=TicketState.RESOLVED, resolved_at__lte=cutoff)
                .first()
            )
            if ticket is None:
                continue
            _transition(ticket=ticket, method=ticket.close, at=now, actor=None, reason="autoclose")
            closed += 1
    return closed


@transaction.atomic
def ticket_update_details(*, ticket: Ticket, actor: User, changes: dict[str, object]) -> Ticket:
    """Change a ticket's department, priority or subject (staff), with an audit row.

    Only the named fields are written, so a reply that moved the state meanwhile
    is never overwritten by a stale copy of the ticket.
    """
    allowed = {"department", "priority", "subject"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError(f"These fields cannot be changed here: {', '.join(sorted(unknown))}")
    ticket = _lock(ticket)
    changed = {k: v for k, v in changes.items() if getattr(ticket, k) != v}
    if not changed:
        return ticket
    for key, value in changed.items():
        setattr(ticket, key, value)
    ticket.save(update_fields=list(changed))
    audit_record(
        action="support.ticket_updated",
        actor=actor,
        target=ticket,
        customer=ticket.customer,
        detail={k: str(v) for k, v in changed.items()},
    )
    return ticket
