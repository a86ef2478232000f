"""The support desk: departments, tickets, their messages and attachments, canned replies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_fsm import FSMField, FSMModelMixin, transition

from accounts.models import Customer


class Department(models.Model):
    """Where a ticket goes: sales, technical support, billing. Its address is notified."""

    name = models.CharField(max_length=100, unique=True)
    email = models.EmailField(
        "e-mail address", help_text="New tickets and customer replies are sent here."
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive departments are not offered to customers."
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TicketState(models.TextChoices):
    OPEN = "open", "Open"
    AWAITING_STAFF = "awaiting_staff", "Awaiting staff"
    AWAITING_CUSTOMER = "awaiting_customer", "Awaiting customer"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class TicketPriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


# States in which a ticket still needs somebody's attention.
UNRESOLVED_STATES = (
    TicketState.OPEN,
    TicketState.AWAITING_STAFF,
    TicketState.AWAITING_CUSTOMER,
)


class Ticket(FSMModelMixin, models.Model):
    """A customer's question, kept as one conversation with staff.

    The state only moves through the transition methods below, which change
    fields in memory; ``support.services`` locks the row, calls them and saves.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tickets")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="tickets")
    # The hosting account the question is about, if any; always one of the customer's.
    service = models.ForeignKey(
        "provisioning.Service",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tickets",
    )
    subject = models.CharField(max_length=200)
    priority = models.CharField(
        max_length=10, choices=TicketPriority.choices, default=TicketPriority.NORMAL
    )
    state = FSMField(
        max_length=20,
        choices=TicketState.choices,
        default=TicketState.OPEN,
        protected=True,
        db_index=True,
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
        limit_choices_to={"is_staff": True},
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # The first public staff reply; internal notes do not count as a response.
    first_response_at = models.DateTimeField(null=True, blank=True)
    # The latest resolution; cleared when the customer reopens the ticket.
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["customer", "-updated_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def reference(self) -> str:
        return f"#{self.pk}"

    @property
    def is_closed(self) -> bool:
        return bool(self.state == TicketState.CLOSED)

    @property
    def first_response_time(self) -> timedelta | None:
        if self.first_response_at is None:
            return None
        return self.first_response_at - self.created_at

    @property
    def resolution_time(self) -> timedelta | None:
        if self.resolved_at is None:
            return None
        return self.resolved_at - self.created_at

    # Transitions: fields in memory only, no save, no side effects.

    @transition(
        field=state,
        source=[
            TicketState.OPEN,
            TicketState.AWAITING_STAFF,
            TicketState.AWAITING_CUSTOMER,
            TicketState.RESOLVED,
        ],
        target=TicketState.AWAITING_STAFF,
    )
    def customer_replied(self, *, at: datetime) -> None:
        """The customer wrote; on a resolved ticket this reopens it."""
        self.resolved_at = None
        self.updated_at = at

    @transition(
        field=state,
        source=[
            TicketState.OPEN,
            TicketState.AWAITING_STAFF,
            TicketState.AWAITING_CUSTOMER,
            TicketState.RESOLVED,
        ],
        target=TicketState.AWAITING_CUSTOMER,
    )
    def staff_replied(self, *, at: datetime) -> None:
        if self.first_response_at is None:
            self.first_response_at = at
        self.resolved_at = None
        self.updated_at = at

    @transition(field=state, source=list(UNRESOLVED_STATES), target=TicketState.RESOLVED)
    def resolve(self, *, at: datetime) -> None:
        self.resolved_at = at
        self.updated_at = at

    # Resolved tickets close on their own after a few days; staff may also close
    # an unresolved one directly (spam, duplicates).
    @transition(
        field=state,
        source=[*UNRESOLVED_STATES, TicketState.RESOLVED],
        target=TicketState.CLOSED,
    )
    def close(self, *, at: datetime) -> None:
        self.closed_at = at
        self.updated_at = at


class MessageKind(models.TextChoices):
    CUSTOMER = "customer", "Customer reply"
    STAFF = "staff", "Staff reply"
    NOTE = "note", "Internal note"


class TicketMessage(models.Model):
    """One entry of a ticket's conversation. Notes (kind ``note``) are for staff only."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=10, choices=MessageKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # Set once the e-mail about this message went out (or nobody was to be told).
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.ticket_id}"

    @property
    def is_internal(self) -> bool:
        return bool(self.kind == MessageKind.NOTE)


def attachment_path(instance: Attachment, filename: str) -> str:
    # A random name: the customer's file name never reaches the file system.
    name = uuid.uuid4().hex
    return f"support/attachments/{name[:2]}/{name}"


class Attachment(models.Model):
    """A file sent with a message, kept under MEDIA_ROOT (never served directly)."""

    message = models.ForeignKey(TicketMessage, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=200)
    original_name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.original_name


class CannedReply(models.Model):
    """A prepared answer staff can start a reply from."""

    title = models.CharField(max_length=120)
    body = models.TextField()
    department = models.ForeignKey(
        Department,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_replies",
        help_text="Leave empty to offer it in every department.",
    )

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title


def delete_attachment_file(
    sender: type[Attachment], instance: Attachment, **kwargs: object
) -> None:
    """Remove the stored file once the row's deletion is committed (a ticket deleted in
    the admin takes its files with it; a rolled-back deletion keeps them)."""
    from django.db import transaction

    if not instance.file:
        return
    storage, name = instance.file.storage, instance.file.name
    transaction.on_commit(lambda: storage.delete(name) if name else None)
