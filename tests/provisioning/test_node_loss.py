"""A node that goes away mid-operation: its work waits, and the outage costs no retries."""

from __future__ import annotations

import pytest

from provisioning import services, workflow
from provisioning.errors import HostKeyRefused, NodeUnreachable, TransientStepError
from provisioning.models import Node, Operation, StepRun
from provisioning.steps.base import KINDS, OperationKind, Step, StepContext, register_kind
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db

# What the scripted step raises on each try (None: it succeeds).
SCRIPT: list[Exception | None] = []


class Scripted(Step):
    name = "scripted"

    def apply(self, ctx: StepContext) -> None:
        outcome = SCRIPT.pop(0)
        if outcome is not None:
            raise outcome


@pytest.fixture
def operation(settings):
    settings.PROVISIONING_STEP_RETRIES = 2
    # The breaker's pacing is tested on its own; here every try reaches the step.
    settings.PROVISIONING_BREAKER_FAILURES = 1000
    register_kind(OperationKind(name="test_outage", steps=(Scripted,)))
    Node.objects.create(name="web1", address="127.0.0.1", roles=["web"],
                        host_key="ssh-ed25519 AAAA")  # fmt: skip
    service = services.service_order(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), domain="outage.example.com"
    )
    op = service.operations.get()
    Operation.objects.filter(pk=op.pk).update(kind="test_outage")
    yield op
    KINDS.pop("test_outage", None)
    SCRIPT.clear()


def _run_until_settled(operation: Operation, tries: int) -> list[str]:
    outcomes = []
    for _ in range(tries):
        outcome, _countdown = workflow.step_execute(operation_id=operation.pk, position=0)
        outcomes.append(outcome)
        if outcome != workflow.RETRY:
            break
    return outcomes


def test_an_outage_does_not_use_up_the_retries_of_the_step_it_interrupted(operation):
    # given a step that loses its node mid-request, waits through an outage, then finds the
    # node's daemons still starting twice before it succeeds
    lost = TransientStepError("the node did not answer in time; the outcome is unknown")
    gone = NodeUnreachable("cannot connect to 127.0.0.1:22: no route to host")
    starting = TransientStepError("MariaDB is not answering")
    SCRIPT[:] = [lost, gone, gone, gone, gone, gone, starting, starting, None]

    # when the worker runs it each time it is retried
    outcomes = _run_until_settled(operation, 20)

    # then it completed: the tries while the node was gone were not counted as failures
    assert outcomes[-1] == workflow.DONE, outcomes
    op = Operation.objects.get(pk=operation.pk)
    assert op.state == Operation.State.COMPLETED
    runs = StepRun.objects.filter(operation=op).order_by("attempt")
    assert [r.node_unreachable for r in runs] == [False] + [True] * 5 + [False] * 3
    assert not StepRun.objects.filter(operation=op, direction="undo").exists()


def test_the_retries_still_run_out_for_a_node_that_answers(operation):
    # given a step failing transiently on a node that answers every time
    SCRIPT[:] = [TransientStepError("busy")] * 3

    # when it is run until the engine gives up
    outcomes = _run_until_settled(operation, 10)

    # then after the allowed retries it is failed and rolled back
    assert outcomes == [workflow.RETRY, workflow.RETRY, workflow.FAILED]
    assert Operation.objects.get(pk=operation.pk).state == Operation.State.ROLLING_BACK


def test_a_node_presenting_another_host_key_pauses_its_work_and_is_flagged(operation):
    # given a node that was reinstalled: it presents a key that is not the pinned one
    refused = HostKeyRefused("host key of 127.0.0.1:22 does not match the pinned key", clean=True)
    SCRIPT[:] = [refused] * 6

    # when the worker keeps trying its step
    outcomes = _run_until_settled(operation, 6)

    # then the operation waits (nothing failed, nothing undone) and the node is flagged
    assert outcomes == [workflow.RETRY] * 6
    op = Operation.objects.get(pk=operation.pk)
    assert op.state in Operation.RUNNING_STATES and op.state != Operation.State.ROLLING_BACK
    node = Node.objects.get(name="web1")
    assert "does not match the pinned key" in node.health["breaker"]["last_error"]
    assert node.health["ok"] is False
