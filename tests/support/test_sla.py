"""First-response and resolution times, and the SLA figures built from them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from support import services
from support.selectors import sla_report
from tests.support.factories import DepartmentFactory

pytestmark = pytest.mark.django_db


def _open(customer, owner, department, *, at, priority="normal"):
    return services.ticket_open(
        customer=customer,
        user=owner,
        department=department,
        subject="s",
        body="b b",
        priority=priority,
        at=at,
    )


def test_sla_medians_and_tickets_over_target(customer, owner, department, agent):
    now = timezone.now()
    t0 = now - timedelta(days=2)
    billing = DepartmentFactory(name="Billing", email="billing@support.example.com")
    # given normal tickets answered after 1 h, 2 h and 10 h (target 8 h) ...
    answered = []
    for hours in (1, 2, 10):
        ticket = _open(customer, owner, department, at=t0)
        services.ticket_reply_staff(
            ticket=ticket, user=agent, body="a", at=t0 + timedelta(hours=hours)
        )
        answered.append(ticket)
    # ... one of them resolved after a day
    services.ticket_resolve(ticket=answered[0], actor=agent, at=t0 + timedelta(hours=24))
    # ... one normal ticket nobody answered for two days (over target)
    _open(customer, owner, department, at=t0)
    # ... an urgent one opened 30 minutes ago (target 1 h, not over yet)
    _open(customer, owner, department, at=now - timedelta(minutes=30), priority="urgent")
    # ... and a billing question answered in 5 minutes
    quick = _open(customer, owner, billing, at=t0)
    services.ticket_reply_staff(ticket=quick, user=agent, body="a", at=t0 + timedelta(minutes=5))

    # when the report is made
    rows = {(r.department, r.priority): r for r in sla_report(now=now)}

    # then the medians and counts per department and priority are right
    tech_normal = rows[("Technical support", "normal")]
    assert tech_normal.tickets == 4
    assert tech_normal.answered == 3
    assert tech_normal.median_first_response == timedelta(hours=2)
    assert tech_normal.median_resolution == timedelta(hours=24)
    assert tech_normal.target == timedelta(hours=8)
    # the 10 h answer and the unanswered ticket are over the 8 h target
    assert tech_normal.open_over_target == 2
    urgent = rows[("Technical support", "urgent")]
    assert urgent.open_over_target == 0
    assert urgent.median_first_response is None
    assert rows[("Billing", "normal")].median_first_response == timedelta(minutes=5)
    # and tickets outside the period are left out
    assert sla_report(since=now - timedelta(hours=1), now=now)[0].priority == "urgent"


def test_resolved_tickets_do_not_count_as_open_over_target(customer, owner, department, agent):
    t0 = timezone.now() - timedelta(days=3)
    ticket = _open(customer, owner, department, at=t0)
    services.ticket_reply_staff(
        ticket=ticket, user=agent, body="late", resolve=True, at=t0 + timedelta(days=1)
    )
    [row] = sla_report()
    assert row.open_over_target == 0
    assert row.median_first_response == timedelta(days=1)
