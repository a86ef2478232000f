"""Suspension holds: one row per reason, who placed and lifted it and when; the service is
suspended while any is open; a change that finds the service busy runs when it is free."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from accounts.models import AuditLog
from provisioning import services, workflow
from provisioning.models import IPAddress, Node, Operation, Service, SuspensionHold
from provisioning.steps.base import get_kind
from tests.factories import PlanFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    node = Node.objects.create(
        name="web1", address="127.0.0.1", port=2222, roles=["web"], host_key="ssh-ed25519 AAAA"
    )
    IPAddress.objects.create(address="192.0.2.1", node=node)
    return node


@pytest.fixture
def service(customer, node):
    service = services.service_order(
        customer=customer, plan=PlanFactory.create(), domain="holds.example.com"
    )
    Operation.objects.filter(service=service).update(state="completed")
    Service.objects.filter(pk=service.pk).update(state="active")
    return Service.objects.get(pk=service.pk)


@pytest.fixture
def agent():
    return UserFactory.create(email="agent@hostwright.test", is_staff=True)


def suspended(service: Service) -> Service:
    """The suspend operation ran on the node (as the worker would have it)."""
    Operation.objects.filter(service=service, state__in=Operation.RUNNING_STATES).update(
        state="completed"
    )
    Service.objects.filter(pk=service.pk).update(state="suspended")
    return Service.objects.get(pk=service.pk)


def running(service: Service, kind: str = "backup_create") -> Operation:
    """An operation of ``kind`` whose steps are all done, waiting for its last transition."""
    op = Operation.objects.create(service=service, kind=kind)
    Operation.objects.filter(pk=op.pk).update(state="configuring")
    return Operation.objects.get(pk=op.pk)


def finish(op: Operation, capture) -> None:
    """Complete ``op`` (its steps all done) through the workflow and run what its commit
    would run."""
    Operation.objects.filter(pk=op.pk).update(
        state="configuring", current_step=len(get_kind(op.kind).steps)
    )
    with capture() as callbacks:
        assert workflow.operation_finish(operation_id=op.pk) == workflow.DONE
    for callback in callbacks:
        callback()


def test_each_reason_is_a_row_with_who_and_when(service, agent):
    # when billing suspends for non-payment and an agent adds abuse while that runs
    op = services.service_suspend(service=service, reason="non_payment")
    second = services.service_suspend(service=service, reason="abuse", actor=agent, note="spam")
    # then one suspend operation runs and two open holds say who placed them
    assert op is not None and op.kind == "suspend" and second is None
    holds = list(SuspensionHold.objects.filter(service=service))
    assert [(h.reason, h.placed_by, h.placed_by_label, h.is_open) for h in holds] == [
        ("non_payment", None, "system", True),
        ("abuse", agent, agent.email, True),
    ]
    assert holds[1].note == "spam"
    assert Service.objects.get(pk=service.pk).suspension_reasons == ["non_payment", "abuse"]
    # and placing abuse again adds nothing
    assert services.service_suspend(service=service, reason="abuse", actor=agent) is None
    assert SuspensionHold.objects.filter(service=service).count() == 2
    assert AuditLog.objects.filter(action="provisioning.service.hold_placed").count() == 2


def test_a_payment_lifts_only_the_non_payment_hold(service, agent):
    # given a service suspended for non-payment and for abuse
    services.service_suspend(service=service, reason="non_payment")
    services.service_suspend(service=service, reason="abuse", actor=agent)
    service = suspended(service)
    # when the payment lifts the non-payment hold
    assert services.service_unsuspend(service=service, reason="non_payment") is None
    # then that hold is closed, with when and by whom, and the abuse hold keeps it suspended
    lifted = SuspensionHold.objects.get(service=service, reason="non_payment")
    assert lifted.lifted_at is not None and lifted.lifted_by_label == "system"
    assert SuspensionHold.objects.get(service=service, reason="abuse").is_open
    service = Service.objects.get(pk=service.pk)
    assert service.state == "suspended" and service.suspension_reasons == ["abuse"]
    assert not Operation.objects.filter(service=service, kind="unsuspend").exists()
    # when the agent lifts abuse, then the unsuspension starts
    op = services.service_unsuspend(service=service, reason="abuse", actor=agent)
    assert op is not None and op.kind == "unsuspend"
    assert SuspensionHold.objects.get(service=service, reason="abuse").lifted_by == agent
    # and the site's history keeps both holds
    assert SuspensionHold.objects.filter(service=service, lifted_at__isnull=False).count() == 2


def test_lifting_a_hold_that_is_not_open_changes_nothing(service):
    services.service_suspend(service=service, reason="abuse")
    service = suspended(service)
    assert services.service_unsuspend(service=service, reason="non_payment") is None
    assert SuspensionHold.objects.get(service=service).is_open
    assert Service.objects.get(pk=service.pk).state == "suspended"


def test_an_unsuspend_that_finds_the_service_busy_runs_when_it_is_free(
    service, django_capture_on_commit_callbacks
):
    # given a service suspended for non-payment, whose nightly backup is running
    services.service_suspend(service=service, reason="non_payment")
    service = suspended(service)
    backup = running(service)
    # when the payment arrives, then it is not refused: the hold is lifted, nothing starts yet
    assert services.service_unsuspend(service=service, reason="non_payment") is None
    assert not SuspensionHold.objects.filter(service=service, lifted_at__isnull=True).exists()
    assert not Operation.objects.filter(service=service, kind="unsuspend").exists()
    # when the backup ends, then the unsuspension starts
    finish(backup, django_capture_on_commit_callbacks)
    op = Operation.objects.get(service=service, kind="unsuspend")
    assert op.state == "queued"


def test_a_hold_placed_during_an_unsuspension_suspends_again_after_it(
    service, agent, django_capture_on_commit_callbacks
):
    # given an unsuspension running after the payment
    services.service_suspend(service=service, reason="non_payment")
    service = suspended(service)
    unsuspend = services.service_unsuspend(service=service, reason="non_payment")
    assert unsuspend is not None
    # when an agent places an abuse hold while it runs
    assert services.service_suspend(service=service, reason="abuse", actor=agent) is None
    # and the unsuspension completes (the service is active again for a moment)
    finish(Operation.objects.get(pk=unsuspend.pk), django_capture_on_commit_callbacks)
    # then a suspension starts at once, for abuse
    service = Service.objects.get(pk=service.pk)
    assert service.state == "active" and service.suspension_reasons == ["abuse"]
    suspend = Operation.objects.filter(service=service, kind="suspend").latest("pk")
    assert suspend.state == "queued" and suspend.params == {"reason": "abuse"}


def test_a_suspension_asked_while_the_account_is_created_runs_after_it(
    customer, node, django_capture_on_commit_callbacks
):
    service = services.service_order(
        customer=customer, plan=PlanFactory.create(), domain="early.example.com"
    )
    create = service.operations.get()
    assert services.service_suspend(service=service, reason="abuse") is None
    finish(Operation.objects.get(pk=create.pk), django_capture_on_commit_callbacks)
    assert Service.objects.get(pk=service.pk).state == "active"
    assert Operation.objects.filter(service=service, kind="suspend", state="queued").exists()


def test_a_failed_unsuspension_is_not_looped_but_caught_up(
    service, django_capture_on_commit_callbacks
):
    # given an unsuspension that ends rolled back (the node refused)
    services.service_suspend(service=service, reason="staff")
    service = suspended(service)
    op = services.service_unsuspend(service=service, reason="staff")
    assert op is not None
    Operation.objects.filter(pk=op.pk).update(state="rolling_back")
    with django_capture_on_commit_callbacks() as callbacks:
        locked = Operation.objects.get(pk=op.pk)
        workflow.record_transition(locked, "finish_rollback", detail="undone")
    for callback in callbacks:
        callback()
    # then it is not started again by its own end
    assert Operation.objects.filter(service=service, kind="unsuspend").count() == 1
    # and the daily catch-up starts it again
    assert services.services_holds_catch_up() == 1
    assert Operation.objects.filter(service=service, kind="unsuspend").count() == 2
    assert services.services_holds_catch_up() == 0


def test_terminated_services_take_no_hold(service):
    Service.objects.filter(pk=service.pk).update(state="terminated")
    with pytest.raises(services.ProvisioningRefused, match="only live accounts"):
        services.service_suspend(service=service, reason="abuse")
    assert not SuspensionHold.objects.exists()


def test_old_suspension_reasons_become_open_holds(service):
    # given a service suspended before holds existed, with a repeated and an unknown reason
    Service.objects.filter(pk=service.pk).update(
        state="suspended", suspension_reasons=["non_payment", "abuse", "abuse", "overdue"]
    )
    migration = importlib.import_module("provisioning.migrations.0005_suspension_holds")
    # when the migration runs
    migration.reasons_to_holds(apps, None)
    # then each known reason is an open hold placed by the migration
    holds = SuspensionHold.objects.filter(service=service)
    assert sorted(h.reason for h in holds) == ["abuse", "non_payment"]
    assert {h.placed_by_label for h in holds} == {"migration"}
    assert Service.objects.get(pk=service.pk).suspension_reasons == ["non_payment", "abuse"]
    # and lifting them one by one unsuspends only at the end
    assert services.service_unsuspend(service=service, reason="abuse") is None
    op = services.service_unsuspend(service=service, reason="non_payment")
    assert op is not None and op.kind == "unsuspend"
