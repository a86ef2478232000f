"""Reads of the support desk: tickets scoped to a customer, and the SLA figures."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import Customer
from provisioning.models import Operation, Service
from support.models import (
    UNRESOLVED_STATES,
    Attachment,
    CannedReply,
    Department,
    MessageKind,
    Ticket,
    TicketMessage,
    TicketPriority,
)

# Hours within which the first staff answer should arrive, per priority.
DEFAULT_FIRST_RESPONSE_TARGET_HOURS: dict[str, int] = {
    TicketPriority.URGENT: 1,
    TicketPriority.HIGH: 4,
    TicketPriority.NORMAL: 8,
    TicketPriority.LOW: 24,
}


def first_response_target(priority: str) -> timedelta:
    targets = getattr(
        settings, "SUPPORT_FIRST_RESPONSE_TARGET_HOURS", DEFAULT_FIRST_RESPONSE_TARGET_HOURS
    )
    return timedelta(hours=targets.get(priority, DEFAULT_FIRST_RESPONSE_TARGET_HOURS["normal"]))


def departments_open_to_customers() -> QuerySet[Department]:
    return Department.objects.filter(is_active=True)


def ticket_list_for_customer(*, customer: Customer) -> QuerySet[Ticket]:
    """The customer's tickets, newest activity first, with the department."""
    return (
        Ticket.objects.filter(customer=customer)
        .select_related("department")
        .annotate(
            public_messages=Count("messages", filter=~Q(messages__kind=MessageKind.NOTE)),
        )
        .order_by("-updated_at", "-id")
    )


def open_ticket_count(*, customer: Customer) -> int:
    """How many of the customer's tickets are not resolved yet (for the dashboard)."""
    return Ticket.objects.filter(customer=customer, state__in=UNRESOLVED_STATES).count()


def ticket_for_customer(*, customer: Customer | None, ticket_id: int) -> Ticket:
    """One of the customer's tickets, or 404: another customer's ticket does not exist."""
    if customer is None:
        raise Http404("No such ticket")
    ticket = (
        Ticket.objects.select_related("department", "customer", "service")
        .filter(customer=customer, pk=ticket_id)
        .first()
    )
    if ticket is None:
        raise Http404("No such ticket")
    return ticket


def public_messages(*, ticket: Ticket) -> QuerySet[TicketMessage]:
    """The conversation as the customer sees it: internal notes left out."""
    return (
        ticket.messages.exclude(kind=MessageKind.NOTE)
        .select_related("author")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
    )


def all_messages(*, ticket: Ticket) -> QuerySet[TicketMessage]:
    """The whole conversation with internal notes, for staff."""
    return ticket.messages.select_related("author").prefetch_related("attachments")


def attachment_for_customer(
    *, customer: Customer | None, ticket_id: int, attachment_id: int
) -> Attachment:
    """An attachment the customer may download: on their ticket and not on a note."""
    ticket = ticket_for_customer(customer=customer, ticket_id=ticket_id)
    attachment = (
        Attachment.objects.filter(pk=attachment_id, message__ticket=ticket)
        .exclude(message__kind=MessageKind.NOTE)
        .first()
    )
    if attachment is None:
        raise Http404("No such attachment")
    return attachment


def canned_replies_for(*, ticket: Ticket) -> QuerySet[CannedReply]:
    return CannedReply.objects.filter(
        Q(department__isnull=True) | Q(department_id=ticket.department_id)
    ).order_by("title")


@dataclass(frozen=True)
class SlaRow:
    department: str
    priority: str
    tickets: int
    answered: int
    median_first_response: timedelta | None
    median_resolution: timedelta | None
    target: timedelta
    open_over_target: int


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


def sla_report(*, since: datetime | None = None, now: datetime | None = None) -> list[SlaRow]:
    """Per department and priority: median first response and resolution times of the
    tickets opened since ``since`` (all when None), and how many unresolved tickets
    are past their first-response target (answered late, or not yet answered).
    """
    now = now or timezone.now()
    tickets = Ticket.objects.all()
    if since is not None:
        tickets = tickets.filter(created_at__gte=since)
    rows = tickets.values_list(
        "department__name", "priority", "state", "created_at", "first_response_at", "resolved_at"
    )
    groups: dict[tuple[str, str], list[tuple[str, datetime, datetime | None, datetime | None]]]
    groups = {}
    for department, priority, state, created, first, resolved in rows:
        groups.setdefault((department, priority), []).append((state, created, first, resolved))
    order = {p: i for i, p in enumerate(reversed(TicketPriority.values))}
    report = []
    for (department, priority), items in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))
    ):
        target = first_response_target(priority)
        responses = [first - created for _s, created, first, _r in items if first is not None]
        resolutions = [res - created for _s, created, _f, res in items if res is not None]
        over = sum(
            1
            for state, created, first, _r in items
            if state in UNRESOLVED_STATES and ((first or now) - created) > target
        )
        report.append(
            SlaRow(
                department=department,
                priority=priority,
                tickets=len(items),
                answered=len(responses),
                median_first_response=_median(responses),
                median_resolution=_median(resolutions),
                target=target,
                open_over_target=over,
            )
        )
    return report


def service_choices(*, customer: Customer) -> list[tuple[int, str]]:
    """The customer's services a ticket may be about, live ones first."""
    services = Service.objects.filter(customer=customer).order_by("-created_at", "-id")
    live = [s for s in services if s.state not in ("terminated", "failed")]
    gone = [s for s in services if s.state in ("terminated", "failed")]
    return [(s.pk, f"{s.domain} ({s.get_state_display().lower()})") for s in live + gone]


def customer_services_with_operations(*, customer: Customer, limit: int = 20) -> list[Service]:
    """The customer's services for the staff ticket page, each with its recent operations."""
    return list(
        Service.objects.filter(customer=customer)
        .select_related("plan", "node")
        .prefetch_related(
            Prefetch(
                "operations",
                queryset=Operation.objects.order_by("-created_at", "-id"),
                to_attr="all_operations",
            )
        )
        .order_by("-created_at", "-id")[:limit]
    )
