"""Resolved tickets close after SUPPORT_AUTOCLOSE_DAYS; running it again changes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AuditLog
from hosting.celery import app as celery_app
from support import services
from support.models import Ticket, TicketState
from support.tasks import autoclose_resolved_tickets

pytestmark = pytest.mark.django_db


def _resolved_ticket(customer, owner, department, agent, *, resolved_at):
    ticket = services.ticket_open(
        customer=customer,
        user=owner,
        department=department,
        subject="x",
        body="y z",
        at=resolved_at - timedelta(hours=1),
    )
    services.ticket_reply_staff(
        ticket=ticket, user=agent, body="done", resolve=True, at=resolved_at
    )
    return Ticket.objects.get(pk=ticket.pk)


def test_autoclose_with_a_moving_clock(customer, owner, department, agent, settings):
    settings.SUPPORT_AUTOCLOSE_DAYS = 3
    start = timezone.now()
    # given two tickets resolved a day apart, and one still waiting for staff
    first = _resolved_ticket(customer, owner, department, agent, resolved_at=start)
    second = _resolved_ticket(
        customer, owner, department, agent, resolved_at=start + timedelta(days=1)
    )
    waiting = services.ticket_open(
        customer=customer, user=owner, department=department, subject="w", body="w w", at=start
    )

    # when the clock is short of three days: nothing closes
    assert services.tickets_autoclose(now=start + timedelta(days=3) - timedelta(seconds=1)) == 0
    # when it reaches three days after the first resolution: only the first closes
    assert services.tickets_autoclose(now=start + timedelta(days=3)) == 1
    # and running again at the same moment, or a bit later, closes nothing more
    assert services.tickets_autoclose(now=start + timedelta(days=3)) == 0
    assert services.tickets_autoclose(now=start + timedelta(days=3, hours=12)) == 0
    # when the clock passes the second one's deadline: the second closes
    assert services.tickets_autoclose(now=start + timedelta(days=4)) == 1
    assert services.tickets_autoclose(now=start + timedelta(days=30)) == 0

    states = dict(Ticket.objects.values_list("pk", "state"))
    assert states[first.pk] == TicketState.CLOSED
    assert states[second.pk] == TicketState.CLOSED
    # a ticket that was never resolved never closes on its own
    assert states[waiting.pk] == TicketState.OPEN
    closed_rows = AuditLog.objects.filter(
        action="support.ticket_state_changed", detail__reason="autoclose"
    )
    assert closed_rows.count() == 2
    assert {r.actor for r in closed_rows} == {None}
    assert Ticket.objects.get(pk=first.pk).closed_at == start + timedelta(days=3)


def test_a_reopened_ticket_is_not_closed(customer, owner, department, agent):
    start = timezone.now() - timedelta(days=30)
    ticket = _resolved_ticket(customer, owner, department, agent, resolved_at=start)
    # the customer answered after the resolution: the ticket is active again
    services.ticket_reply_customer(
        ticket=ticket, user=owner, body="not fixed", at=start + timedelta(days=1)
    )
    assert services.tickets_autoclose(days=7) == 0
    ticket.refresh_from_db()
    assert ticket.state == TicketState.AWAITING_STAFF


def test_the_command_and_the_task_close_old_resolved_tickets(
    customer, owner, department, agent, settings
):
    settings.SUPPORT_AUTOCLOSE_DAYS = 7
    old = _resolved_ticket(
        customer, owner, department, agent, resolved_at=timezone.now() - timedelta(days=8)
    )
    recent = _resolved_ticket(
        customer, owner, department, agent, resolved_at=timezone.now() - timedelta(days=6)
    )
    out = StringIO()
    call_command("support_autoclose", stdout=out)
    assert "closed 1 ticket(s)" in out.getvalue()
    call_command("support_autoclose", stdout=out)
    assert "closed 0 ticket(s)" in out.getvalue()
    # the periodic task does the same job and is equally safe to repeat
    assert autoclose_resolved_tickets.delay().get() == 0
    assert Ticket.objects.get(pk=old.pk).state == TicketState.CLOSED
    assert Ticket.objects.get(pk=recent.pk).state == TicketState.RESOLVED


def test_the_beat_schedule_runs_the_autoclose_task():
    entries = [e["task"] for e in celery_app.conf.beat_schedule.values()]
    assert "support.autoclose_resolved_tickets" in entries
