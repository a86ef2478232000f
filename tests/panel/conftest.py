"""Panel fixtures: services, operations and step runs written straight to the database
(the engine's own tests cover how they come about; here we read them)."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from provisioning.models import Node, Operation, Service, StepRun
from tests.factories import PlanFactory

_seq = itertools.count(1)


@pytest.fixture
def plan(db):
    return PlanFactory.create(name="Starter", slug="starter", disk_mb=1000)


@pytest.fixture
def node(db):
    return Node.objects.create(name="web1", address="127.0.0.1", port=2222, roles=["web"])


def make_service(customer, plan, node, *, state: str = "active", **extra) -> Service:
    n = next(_seq)
    service = Service.objects.create(
        customer=customer,
        plan=plan,
        node=node,
        username=f"hwpanel{n}",
        domain=extra.pop("domain", f"site{n}.example.com"),
        **extra,
    )
    # The state field is protected: tests set it the way the engine's on_completed does.
    Service.objects.filter(pk=service.pk).update(state=state)
    return Service.objects.get(pk=service.pk)


def make_operation(
    service: Service, *, kind: str = "create", state: str = "completed", **extra
) -> Operation:
    op = Operation.objects.create(service=service, kind=kind, **extra)
    Operation.objects.filter(pk=op.pk).update(state=state)
    return Operation.objects.get(pk=op.pk)


def make_run(op: Operation, step: str, status: str, *, direction: str = "apply", position=0):
    return StepRun.objects.create(
        operation=op,
        position=position,
        step=step,
        status=status,
        direction=direction,
        finished_at=None if status == "running" else timezone.now(),
    )
