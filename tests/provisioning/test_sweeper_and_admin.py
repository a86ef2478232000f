"""The sweeper and the staff pages, without a node."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.mfa.models import Authenticator
from django.urls import reverse
from django.utils import timezone

from provisioning import services
from provisioning.errors import ProvisioningRefused
from provisioning.models import Node, NodeResource, Operation, OperationEvent, StepRun
from provisioning.workflow import (
    RETRY,
    operations_recover_after_worker_loss,
    operations_sweep,
    rollback_execute,
)
from tests.factories import CustomerFactory, PlanFactory, UserFactory
from tests.staff import sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def operation():
    Node.objects.create(name="web1", address="127.0.0.1", roles=["web"],
                        host_key="ssh-ed25519 AAAA")  # fmt: skip
    service = services.service_order(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), domain="sweep.example.com"
    )
    return service.operations.get()


def _stall(operation, *, minutes: int, resumes: int = 0) -> None:
    """The operation's worker died in the middle of its second step, long ago."""
    Operation.objects.filter(pk=operation.pk).update(
        state="provisioning", current_step=1, resumes=resumes,
        heartbeat_at=timezone.now() - timedelta(minutes=minutes),
    )  # fmt: skip
    StepRun.objects.create(operation=operation, position=1, step="linux_user")


def test_the_sweeper_resumes_an_operation_that_stopped_moving(operation):
    # given an operation whose worker died mid-step 20 minutes ago
    _stall(operation, minutes=20)

    # when the sweeper runs
    counts = operations_sweep()

    # then it is resumed from that step, the lost attempt is marked, and an event says so
    assert counts["resumed"] == 1
    op = Operation.objects.get(pk=operation.pk)
    assert (op.state, op.current_step, op.resumes) == ("provisioning", 1, 1)
    lost = StepRun.objects.get(operation=op)
    assert lost.status == "failed" and "outcome is unknown" in lost.error
    assert OperationEvent.objects.filter(operation=op, actor_label="sweeper").exists()


def test_the_sweeper_leaves_moving_operations_alone(operation):
    _stall(operation, minutes=1)
    assert set(operations_sweep().values()) == {0}
    assert StepRun.objects.get(operation=operation).status == "running"


def test_an_operation_that_keeps_stopping_is_rolled_back(operation, settings):
    # given an operation already resumed as often as allowed
    _stall(operation, minutes=20, resumes=settings.PROVISIONING_MAX_RESUMES)

    # when the sweeper finds it stopped again
    counts = operations_sweep()

    # then it is failed and its rollback begins, with a reason a person understands
    assert counts["rolled_back"] == 1
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == "rolling_back"
    assert "stopped moving" in op.reason
    assert list(op.events.values_list("to_state", flat=True))[-2:] == ["failed", "rolling_back"]


def test_operation_page_shows_the_timeline_with_commands(client, operation):
    # given an operation with a step that ran two commands
    StepRun.objects.create(
        operation=operation, position=0, step="validate", status="succeeded",
        commands=[{"cmd": "test -d /etc/nginx/hostwright/sites", "exit": 0, "ms": 1}],
        finished_at=timezone.now(),
    )  # fmt: skip
    staff = UserFactory.create(email="ops@staff.example.com", is_staff=True, is_superuser=True)
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    sign_in_staff(client, staff)

    # when staff open it
    page = client.get(reverse("admin:provisioning_operation_change", args=[operation.pk]))

    # then the events and the step with its command and exit code are on the page
    html = page.content.decode()
    assert page.status_code == 200
    assert "create requested" in html
    assert "test -d /etc/nginx/hostwright/sites" in html and "exit 0" in html
    # and the service and node pages render too
    assert client.get(reverse("admin:provisioning_service_changelist")).status_code == 200
    assert client.get(reverse("admin:provisioning_node_changelist")).status_code == 200


def test_admin_retry_refusal_is_shown_as_a_message(client, operation):
    staff = UserFactory.create(email="ops2@staff.example.com", is_staff=True, is_superuser=True)
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    sign_in_staff(client, staff)
    response = client.post(
        reverse("admin:provisioning_operation_changelist"),
        {"action": "retry", "_selected_action": [operation.pk]},
        follow=True,
    )
    assert "Only failed or rolled-back operations can be retried" in response.content.decode()


def test_the_sweeper_runs_on_celery_beat(settings):
    from hosting.celery import app

    tasks = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert tasks["provisioning.operations_sweep"] == settings.PROVISIONING_SWEEP_EVERY
    # often enough that a lost task of a queued operation is sent again within a minute
    assert settings.PROVISIONING_SWEEP_EVERY + settings.PROVISIONING_QUEUED_STALE_AFTER <= 60


def test_an_operation_paused_on_a_dead_node_is_never_rolled_back(operation, settings):
    # given an operation that has used up its resumes, on a node whose breaker is open
    from provisioning.breaker import breaker_record_failure

    node = operation.service.node
    for _ in range(settings.PROVISIONING_BREAKER_FAILURES):
        breaker_record_failure(node_id=node.pk, error="cannot connect")
    # when the node stays gone for hours and the sweeper keeps finding the operation still
    for _ in range(20):
        _stall(operation, minutes=60, resumes=settings.PROVISIONING_MAX_RESUMES)
        counts = operations_sweep()
        # then it is only queued again to wait for the node
        assert counts["waiting_for_node"] == 1
        assert counts["rolled_back"] == counts["resumed"] == 0
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == "provisioning" and op.resumes == settings.PROVISIONING_MAX_RESUMES
    assert not op.events.filter(to_state__in=["failed", "rolling_back"]).exists()
    assert op.events.filter(actor_label="sweeper", detail__contains="waits for web1").exists()


def _staff_client(client, email):
    staff = UserFactory.create(email=email, is_staff=True, is_superuser=True)
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    sign_in_staff(client, staff)
    return staff


def test_staff_cannot_roll_back_while_a_step_is_running(client, operation):
    # given an operation whose worker is in the middle of its second step right now
    _stall(operation, minutes=0)
    staff = _staff_client(client, "ops3@staff.example.com")

    # when staff roll it back, from the service layer or the admin
    with pytest.raises(ProvisioningRefused, match="still running") as refusal:
        services.operation_rollback(operation=operation, actor=staff)
    response = client.post(
        reverse("admin:provisioning_operation_changelist"),
        {"action": "rollback", "_selected_action": [operation.pk]},
        follow=True,
    )

    # then both are refused with the reason, and the operation goes on untouched
    assert refusal.value.code == "busy"
    assert "Step linux_user is still running" in response.content.decode()
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == "provisioning"
    assert StepRun.objects.get(operation=op).status == "running"


def test_staff_can_roll_back_once_the_running_step_is_known_lost(client, operation):
    # given an operation whose step started longer ago than any step may run
    _stall(operation, minutes=0)
    StepRun.objects.filter(operation=operation).update(
        started_at=timezone.now() - timedelta(minutes=30)
    )
    staff = _staff_client(client, "ops4@staff.example.com")
    # when staff roll it back, then the rollback starts and the lost step is marked so
    services.operation_rollback(operation=operation, actor=staff)
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == "rolling_back"
    lost = StepRun.objects.get(operation=op)
    assert lost.status == "failed" and "outcome is unknown" in lost.error


def test_a_queued_operation_whose_message_was_lost_is_sent_again(operation, settings):
    # given an operation queued 40 s ago that no worker ever started (its message was lost)
    Operation.objects.filter(pk=operation.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=40)
    )

    # when the sweeper runs, with a 30 s patience for queued operations
    with_patience = operations_sweep(queued_after=30)

    # then it is sent to the workers again, without counting as a resume, and says so
    assert with_patience["requeued"] == 1 and with_patience["resumed"] == 0
    op = Operation.objects.get(pk=operation.pk)
    assert (op.state, op.resumes) == ("queued", 0)
    assert op.heartbeat_at > timezone.now() - timedelta(seconds=5)
    assert op.events.filter(actor_label="sweeper", detail__contains="still queued").exists()
    # and the next sweep leaves it alone: its heartbeat moved
    assert operations_sweep(queued_after=30)["requeued"] == 0


def test_a_queued_operation_waiting_its_turn_is_left_alone(operation):
    Operation.objects.filter(pk=operation.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=10)
    )
    assert operations_sweep(queued_after=30)["requeued"] == 0
    assert not operation.events.filter(actor_label="sweeper").exists()


def test_after_the_only_worker_died_its_operations_resume_at_once(operation):
    # given an operation whose worker died seconds ago in the middle of a step
    _stall(operation, minutes=0)
    assert operations_sweep()["resumed"] == 0  # too fresh for the ordinary sweeper

    # when the supervisor of the only worker says that worker is gone
    counts = operations_recover_after_worker_loss()

    # then the step is marked unknown and the operation resumes from it
    assert counts["resumed"] == 1
    op = Operation.objects.get(pk=operation.pk)
    assert (op.state, op.current_step, op.resumes) == ("provisioning", 1, 1)
    assert StepRun.objects.get(operation=op).status == "failed"


def test_a_second_copy_of_a_rollback_leaves_a_running_undo_to_its_worker(operation):
    from provisioning.workflow import BUSY, rollback_execute

    # given a rollback whose undo of step 0 another worker is running right now
    Operation.objects.filter(pk=operation.pk).update(
        state="rolling_back", started_at=timezone.now() - timedelta(seconds=5)
    )
    StepRun.objects.create(operation=operation, position=0, step="validate", status="succeeded")
    StepRun.objects.create(
        operation=operation, position=0, step="validate", direction="undo", status="running"
    )

    # when a second copy of the rollback task arrives
    outcome = rollback_execute(operation_id=operation.pk)

    # then it does nothing: the running undo is not marked failed nor run again
    assert outcome[0] == BUSY
    assert StepRun.objects.filter(direction="undo", status="running").count() == 1


def test_admin_lists_accounts_that_reached_their_mail_limit(client, operation):
    # given two accounts: one whose mail the hourly limit refused, one sending quietly
    limited = operation.service
    limited.mail_sent_last_hour, limited.mail_refused_count = 500, 7
    limited.mail_refused_at = timezone.now()
    limited.save()
    quiet = services.service_order(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), domain="quiet.example.com"
    )
    quiet.mail_sent_last_hour, quiet.mail_refused_count = 3, 0
    quiet.save()
    _staff_client(client, "mail-ops@staff.example.com")

    # when staff filter the accounts by the mail sending limit
    changelist = reverse("admin:provisioning_service_changelist")
    html = client.get(changelist, {"mail_limit": "reached"}).content.decode()

    # then only the limited one is listed, with what it sent against its plan
    assert "sweep.example.com" in html and "quiet.example.com" not in html
    assert f"500 of {limited.plan.mail_per_hour}; 7 refused by the limit" in html
    near = client.get(changelist, {"mail_limit": "near"}).content.decode()
    assert "sweep.example.com" in near and "quiet.example.com" not in near


def _rolling_back_on(operation, *, port: int) -> None:
    """The operation's second step succeeded, then it failed and its rollback began."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate().public_key()
    host_key = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    Node.objects.filter(pk=operation.service.node_id).update(port=port, host_key=host_key)
    # It created the account's user, so its undo must reach the node to remove it.
    run = StepRun.objects.create(
        operation=operation, position=1, step="linux_user", status="succeeded",
        finished_at=timezone.now(), resources={"linux_user_created": True},
    )  # fmt: skip
    service = operation.service
    NodeResource.objects.create(
        service=service, node_id=service.node_id, kind="linux_user", name=service.username,
        operation=operation, step_run=run,
    )  # fmt: skip
    Operation.objects.filter(pk=operation.pk).update(
        state="rolling_back", current_step=2, reason="Step 3 failed."
    )


def test_a_rollback_waits_for_a_node_that_does_not_answer(operation, settings):
    # given a rollback whose node does not answer (nothing listens on its SSH port)
    _rolling_back_on(operation, port=1)

    # when the rollback task runs again and again, longer than any retry budget
    outcomes = [
        rollback_execute(operation_id=operation.pk)[0]
        for _ in range(settings.PROVISIONING_STEP_RETRIES + 4)
    ]

    # then it only ever waits: nothing failed, the breaker opened and paces the tries
    assert set(outcomes) == {RETRY}
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == "rolling_back"
    node = Node.objects.get(services=op.service)
    assert node.health["breaker"]["state"] == "open"
    tries = StepRun.objects.filter(operation=op, direction="undo")
    assert tries.count() == settings.PROVISIONING_BREAKER_FAILURES
    assert op.events.filter(detail__contains="waits for the node").exists()
    assert op.events.filter(detail__contains="work on it is paused").exists()
