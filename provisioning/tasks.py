"""Celery tasks of the provisioning engine: thin, take ids, safe to run twice.

They are acknowledged late (see hosting/celery.py): a worker killed mid-step leaves the
message to be delivered again, and the sweeper resumes what stopped moving.
"""

from __future__ import annotations

import time

import structlog
from celery import Task, shared_task

from provisioning import workflow
from provisioning.models import Operation

# A step runs its commands with a 120 s timeout each; the limits leave room for that.


def _bind(operation_id: int) -> None:
    """Every log line of this task names its operation and service."""
    service_id = (
        Operation.objects.filter(pk=operation_id).values_list("service_id", flat=True).first()
    )
    structlog.contextvars.bind_contextvars(operation_id=operation_id, service_id=service_id)


# One task runs an operation's steps one after another, each claimed, recorded and committed
# on its own as before: a Celery round trip per step cost more than a small step's node work.
# After this long the task hands the next step to a new task, so its time limit always leaves
# room for one more step.
STEPS_FOR_SECONDS = 120


@shared_task(
    bind=True,
    name="provisioning.operation_step",
    max_retries=None,
    soft_time_limit=STEPS_FOR_SECONDS + 300,
    time_limit=STEPS_FOR_SECONDS + 330,
)
def operation_step(self: Task, operation_id: int, position: int) -> str:
    """Run the operation's steps from ``position`` on, until the last one completes it."""
    _bind(operation_id)
    started = time.monotonic()
    while True:
        outcome, countdown = workflow.step_execute(operation_id=operation_id, position=position)
        if outcome == workflow.RETRY:
            # Retries are counted in StepRun rows (they survive a resume), not by Celery.
            raise self.retry(args=(operation_id, position), countdown=countdown, max_retries=None)
        if outcome != workflow.DONE:
            # Failed (the rollback was queued), done elsewhere (the operation completed with
            # its last step), or another worker has it: the rest of this chain has nothing
            # to do.
            self.request.chain = None
            return outcome
        position += 1
        if time.monotonic() - started > STEPS_FOR_SECONDS:
            raise self.replace(operation_step.si(operation_id, position))


@shared_task(name="provisioning.operation_finish", soft_time_limit=60, time_limit=90)
def operation_finish(operation_id: int) -> str:
    _bind(operation_id)
    return workflow.operation_finish(operation_id=operation_id)


@shared_task(
    bind=True,
    name="provisioning.operation_rollback_run",
    max_retries=None,
    soft_time_limit=900,
    time_limit=960,
)
def operation_rollback_run(self: Task, operation_id: int) -> str:
    _bind(operation_id)
    outcome, countdown = workflow.rollback_execute(operation_id=operation_id)
    if outcome == workflow.RETRY:
        raise self.retry(countdown=countdown, max_retries=None)
    return outcome


@shared_task(name="provisioning.operations_sweep", soft_time_limit=120, time_limit=150)
def operations_sweep() -> dict[str, int]:
    return workflow.operations_sweep()


@shared_task(name="provisioning.drift_check", soft_time_limit=300, time_limit=330)
def drift_check(node_id: int | None = None) -> object:
    """Compare one node (or every active node) with the database."""
    from provisioning import drift

    if node_id is None:
        return drift.drift_check_all()
    return drift.drift_check_node(node_id=node_id)


@shared_task(name="provisioning.usage_collect", soft_time_limit=600, time_limit=630)
def usage_collect() -> object:
    """Measure disk, memory and this month's traffic of every account on every active node."""
    from provisioning import usage

    return usage.usage_collect_all()


@shared_task(name="provisioning.certificates_renew", soft_time_limit=300, time_limit=330)
def certificates_renew() -> int:
    """Renew certificates that expire within 30 days (with backoff and the CA budget)."""
    from django.utils import timezone

    from provisioning.resources.services import certificates_renew as renew

    return len(renew(now=timezone.now()))


@shared_task(name="provisioning.backups_nightly", soft_time_limit=300, time_limit=330)
def backups_nightly() -> int:
    """Start today's backup of every active account that has none yet."""
    from django.utils import timezone

    from provisioning.resources.services import backups_schedule

    return len(backups_schedule(now=timezone.now()))
