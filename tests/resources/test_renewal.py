"""Which certificates the renewal run picks, from what the operations recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from provisioning.models import Node, Operation, Service, StepRun
from provisioning.resources import services
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    return Node.objects.create(name="n1", address="127.0.0.1", roles=["web", "dns"])


def account(node, name: str, *, state: str = "active") -> Service:
    return Service.objects.create(
        customer=CustomerFactory.create(),
        plan=PlanFactory.create(),
        node=node,
        username=name,
        domain=f"{name}.example",
        state=state,
    )


def certificate_op(service, *, state: str, at: dt.datetime, not_after: dt.datetime | None):
    op = Operation.objects.create(service=service, kind="certificate_issue", state=state)
    Operation.objects.filter(pk=op.pk).update(created_at=at)
    resources = {"not_after": not_after.isoformat()} if not_after else {}
    StepRun.objects.create(
        operation=op,
        position=1,
        step="certificate",
        status="succeeded" if state == "completed" else "failed",
        resources=resources,
        started_at=at,
    )
    return op


def issued(service, *, days_ago: int, days_left: int, now: dt.datetime):
    at, not_after = now - dt.timedelta(days=days_ago), now + dt.timedelta(days=days_left)
    return certificate_op(service, state="completed", at=at, not_after=not_after)


def test_due_certificates_are_picked_and_fresh_ones_or_backing_off_ones_are_not(node):
    now = timezone.now()
    # given one certificate expiring in 10 days, one in 60, and one due but failing lately
    due = account(node, "due")
    issued(due, days_ago=80, days_left=10, now=now)
    fresh = account(node, "fresh")
    issued(fresh, days_ago=30, days_left=60, now=now)
    failing = account(node, "failing")
    issued(failing, days_ago=85, days_left=5, now=now)
    for hours in (5, 3, 1):  # three failures, the last an hour ago: wait 4 hours
        certificate_op(
            failing, state="rolled_back", at=now - dt.timedelta(hours=hours), not_after=None
        )
    gone = account(node, "gone", state="terminated")
    issued(gone, days_ago=80, days_left=1, now=now)

    # when the renewal plan is made now, then only the due, healthy, live one is picked
    assert services.certificate_renewal_plan(now=now) == [due.pk]

    # and five hours later the failing one has waited long enough
    later = now + dt.timedelta(hours=5)
    assert set(services.certificate_renewal_plan(now=later)) == {due.pk, failing.pk}


def test_renewal_starts_an_operation_per_due_certificate(node):
    now = timezone.now()
    due = account(node, "due")
    issued(due, days_ago=80, days_left=3, now=now)

    started = services.certificates_renew(now=now)

    assert [(op.service_id, op.kind, op.state) for op in started] == [
        (due.pk, "certificate_issue", "queued")
    ]
    # a second run while it is queued starts nothing more (the service is busy)
    assert services.certificates_renew(now=now) == []
