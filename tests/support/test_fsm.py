"""The ticket's life: open -> awaiting staff / awaiting customer -> resolved -> closed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from accounts.models import AuditLog
from support import services
from support.models import MessageKind, Ticket, TicketState

pytestmark = pytest.mark.django_db


def test_a_new_ticket_is_open_with_the_customers_message(ticket, owner):
    # given a ticket just opened (fixture)
    # then it is open and holds the customer's first message
    assert ticket.state == TicketState.OPEN
    [message] = ticket.messages.all()
    assert message.kind == MessageKind.CUSTOMER
    assert message.author == owner
    assert AuditLog.objects.filter(action="support.ticket_opened", object_id=str(ticket.pk))


def test_staff_reply_awaits_customer_and_customer_reply_awaits_staff(ticket, owner, agent):
    # when staff answer
    services.ticket_reply_staff(ticket=ticket, user=agent, body="Restarted PHP, try again.")
    ticket.refresh_from_db()
    # then the ticket waits for the customer
    assert ticket.state == TicketState.AWAITING_CUSTOMER
    # when the customer answers
    services.ticket_reply_customer(ticket=ticket, user=owner, body="Still 502.")
    ticket.refresh_from_db()
    # then it waits for staff
    assert ticket.state == TicketState.AWAITING_STAFF


def test_a_customer_reply_reopens_a_resolved_ticket(ticket, owner, agent):
    # given a resolved ticket
    services.ticket_reply_staff(ticket=ticket, user=agent, body="Fixed.", resolve=True)
    ticket.refresh_from_db()
    assert ticket.state == TicketState.RESOLVED
    assert ticket.resolved_at is not None
    # when the customer writes again
    services.ticket_reply_customer(ticket=ticket, user=owner, body="It is back.")
    ticket.refresh_from_db()
    # then it is open again for staff and no longer counts as resolved
    assert ticket.state == TicketState.AWAITING_STAFF
    assert ticket.resolved_at is None


def test_a_closed_ticket_takes_no_replies(ticket, owner, agent):
    # given a closed ticket
    services.ticket_close(ticket=ticket, actor=agent)
    # then neither side can reply
    with pytest.raises(ValidationError):
        services.ticket_reply_customer(ticket=ticket, user=owner, body="Hello?")
    with pytest.raises(ValidationError):
        services.ticket_reply_staff(ticket=ticket, user=agent, body="Hello?")
    ticket.refresh_from_db()
    assert ticket.state == TicketState.CLOSED
    assert ticket.messages.count() == 1


def test_transitions_refuse_what_the_lifecycle_does_not_allow(ticket):
    # given a closed ticket in memory
    now = timezone.now()
    ticket.close(at=now)
    # then it cannot be resolved or answered by calling the transitions directly
    with pytest.raises(TransitionNotAllowed):
        ticket.resolve(at=now)
    with pytest.raises(TransitionNotAllowed):
        ticket.customer_replied(at=now)


def test_the_state_cannot_be_assigned_directly(ticket):
    # then the protected FSM field refuses a plain assignment
    with pytest.raises(AttributeError):
        ticket.state = TicketState.CLOSED


def test_resolve_twice_is_refused_and_close_twice_is_a_no_op(ticket, agent):
    services.ticket_resolve(ticket=ticket, actor=agent)
    with pytest.raises(ValidationError):
        services.ticket_resolve(ticket=ticket, actor=agent)
    services.ticket_close(ticket=ticket, actor=agent)
    services.ticket_close(ticket=ticket, actor=agent)
    # then one state change row per real change
    changes = AuditLog.objects.filter(
        action="support.ticket_state_changed", object_id=str(ticket.pk)
    )
    assert [c.detail["to"] for c in changes.order_by("id")] == ["resolved", "closed"]


def test_state_changes_write_audit_rows_with_the_actor(ticket, agent):
    services.ticket_reply_staff(ticket=ticket, user=agent, body="On it.")
    row = AuditLog.objects.get(action="support.ticket_state_changed", object_id=str(ticket.pk))
    assert row.actor == agent
    assert row.detail["from"] == "open"
    assert row.detail["to"] == "awaiting_customer"
    assert AuditLog.objects.filter(action="support.ticket_staff_reply", actor=agent).count() == 1


def test_internal_note_changes_no_state_and_sets_no_first_response(ticket, agent):
    services.ticket_add_note(ticket=ticket, user=agent, body="Customer is on node 3.")
    ticket.refresh_from_db()
    assert ticket.state == TicketState.OPEN
    assert ticket.first_response_at is None


def test_first_response_is_the_first_staff_reply_only(ticket, owner, agent):
    # given replies at known times
    t0 = ticket.created_at
    services.ticket_reply_staff(ticket=ticket, user=agent, body="a", at=t0 + timedelta(hours=2))
    services.ticket_reply_customer(ticket=ticket, user=owner, body="b", at=t0 + timedelta(hours=3))
    services.ticket_reply_staff(
        ticket=ticket, user=agent, body="c", resolve=True, at=t0 + timedelta(hours=5)
    )
    ticket = Ticket.objects.get(pk=ticket.pk)
    # then the first response time counts from opening to the first staff reply
    assert ticket.first_response_time == timedelta(hours=2)
    assert ticket.resolution_time == timedelta(hours=5)


def test_assignment_only_to_staff_and_audited(ticket, agent, owner):
    with pytest.raises(ValidationError):
        services.ticket_assign(ticket=ticket, actor=agent, assignee=owner)
    services.ticket_assign(ticket=ticket, actor=agent, assignee=agent)
    ticket.refresh_from_db()
    assert ticket.assigned_to == agent
    assert AuditLog.objects.filter(action="support.ticket_assigned", actor=agent).exists()
