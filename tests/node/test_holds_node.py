"""Suspension holds on the real node with a real worker: a payment that arrives while the
nightly backup runs is not refused; the site comes back as soon as the backup ends."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from provisioning import services
from provisioning.models import Operation, Service, SuspensionHold
from provisioning.resources import services as resources
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_for_kind(service: Service, kind: str) -> Operation:
    deadline = time.monotonic() + 120
    while not Operation.objects.filter(service=service, kind=kind).exists():
        assert time.monotonic() < deadline, f"no {kind} operation started"
        time.sleep(0.2)
    return wait_for_operation(Operation.objects.filter(service=service, kind=kind).latest("pk"))


def test_a_payment_during_the_backup_unsuspends_when_the_backup_ends(worker, hosting_node):
    # given an account suspended for non-payment on the node
    with transaction.atomic():
        service = services.service_order(
            customer=CustomerFactory.create(),
            plan=PlanFactory.create(php_workers=2),
            domain=unique_domain("paid-during-backup"),
        )
    assert wait_for_operation(service.operations.get(kind="create")).state == "completed"
    suspend = services.service_suspend(service=service, reason="non_payment")
    assert suspend is not None and wait_for_operation(suspend).state == "completed"
    assert http_get(service.domain)[0] == 503

    # when the nightly backup starts and the payment lifts the hold while it is running
    with transaction.atomic():
        backup = resources.backup_create(service=Service.objects.get(pk=service.pk))
        lifted = services.service_unsuspend(service=service, reason="non_payment")

    # then nothing was refused: the hold is lifted and no unsuspension raced the backup
    assert lifted is None
    hold = SuspensionHold.objects.get(service=service)
    assert hold.lifted_at is not None
    # and once the backup has ended, the unsuspension runs and the site is back
    assert wait_for_operation(backup).state == "completed"
    unsuspend = wait_for_kind(service, "unsuspend")
    assert unsuspend.state == "completed", unsuspend.reason
    backup_ended = Operation.objects.get(pk=backup.pk).finished_at
    assert backup_ended is not None and unsuspend.created_at >= backup_ended
    assert Service.objects.get(pk=service.pk).state == "active"
    assert http_get(service.domain)[0] == 200
    # (and the account leaves the shared node again)
    gone = services.service_terminate(service=Service.objects.get(pk=service.pk))
    assert wait_for_operation(gone).state == "completed"
