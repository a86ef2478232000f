"""Runs operations: the steps, retries, the rollback, and the sweeper.

Everything that matters lives in PostgreSQL: ``Operation.current_step`` says which step is
next, ``StepRun`` rows say what ran. Each step is claimed under the operation's row lock,
recorded as running, applied, and recorded again in its own transactions; one Celery task
runs an operation's steps one after another (``provisioning.tasks.operation_step``). A task
that runs twice, or after another worker died, finds that state under the row lock and
either continues from it or does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from provisioning import breaker
from provisioning.errors import (
    HostKeyRefused,
    NodeUnreachable,
    OutcomeUnknown,
    PermanentStepError,
    ProvisioningRefused,
    StepError,
)
from provisioning.models import Operation, OperationEvent, Service, StepRun
from provisioning.steps.base import OperationKind, Step, StepContext, get_kind

log = logging.getLogger(__name__)

APPLY_STATES = ("validating", "provisioning", "configuring")
SKIPPED, DONE, RETRY, FAILED, BUSY = "skipped", "done", "retry", "failed", "busy"
HEARTBEAT_FRESH = timedelta(seconds=10)


def record_transition(
    operation: Operation,
    method: str,
    *,
    actor: User | None = None,
    actor_label: str = "",
    detail: str = "",
    **kwargs: Any,
) -> OperationEvent:
    """Run an FSM transition on a locked operation, save it and write its event row."""
    before = operation.state
    getattr(operation, method)(**kwargs)
    operation.heartbeat_at = timezone.now()
    operation.save()
    if operation.state in Operation.FINAL_STATES:
        # A suspension or unsuspension that waited for this operation starts now.
        from provisioning.services import service_holds_enforce_quietly

        service_id, operation_id = operation.service_id, operation.pk
        transaction.on_commit(
            lambda: service_holds_enforce_quietly(
                service_id=service_id, after_operation_id=operation_id
            )
        )
    return OperationEvent.objects.create(
        operation=operation,
        from_state=before,
        to_state=operation.state,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else "system"),
        detail=detail,
    )


def note(operation: Operation, detail: str, *, actor_label: str = "system") -> None:
    """An event that is not a state change (a resume, a retry scheduled)."""
    OperationEvent.objects.create(
        operation=operation,
        from_state=operation.state,
        to_state=operation.state,
        actor_label=actor_label,
        detail=detail,
    )


def queue_chain(operation_id: int, start: int, *, kind: str = "") -> None:
    """Send the operation's steps from ``start`` on to the workers (call after commit): one
    task runs them in order, then ``operation_finish`` makes sure the operation completed.
    Nothing is read here (``kind`` is accepted from callers that know it; it is not needed)."""
    from celery import chain

    from provisioning import tasks

    chain(
        tasks.operation_step.si(operation_id, start), tasks.operation_finish.si(operation_id)
    ).apply_async()


def queue_rollback(operation_id: int) -> None:
    from provisioning import tasks

    tasks.operation_rollback_run.delay(operation_id)


def _locked(operation_id: int) -> Operation:
    return (
        Operation.objects.select_for_update(of=("self",))
        .select_related("service__node", "service__plan", "service__ip", "service__customer")
        .get(pk=operation_id)
    )


def _runs_since_start(operation: Operation) -> Any:
    runs = StepRun.objects.filter(operation=operation)
    if operation.started_at is not None:
        runs = runs.filter(started_at__gte=operation.started_at)
    return runs


def _failpoint(operation: Operation, step: Step, when: str) -> None:
    """Fail a chosen step on purpose; only when PROVISIONING_FAILPOINTS is on (fault tests)."""
    if not settings.PROVISIONING_FAILPOINTS:
        return
    point = (operation.params or {}).get("failpoint") or {}
    if point.get("step") == step.name and point.get("when", "after") == when:
        raise PermanentStepError(f"failpoint: step {step.name} made to fail {when} its work")


def _enter_phase(operation: Operation, step: type[Step]) -> None:
    if operation.state == Operation.State.QUEUED:
        record_transition(operation, "start_validating", actor_label="worker")
    if step.phase == operation.state:
        return
    if step.phase == "provisioning":
        record_transition(operation, "start_provisioning", actor_label="worker")
    elif step.phase == "configuring":
        record_transition(operation, "start_configuring", actor_label="worker")


def _as_step_error(exc: Exception) -> StepError:
    if isinstance(exc, ProvisioningRefused):
        return PermanentStepError("; ".join(exc.messages), clean=True)
    if isinstance(exc, NodeUnreachable | OutcomeUnknown | HostKeyRefused):
        # The SSH layer's words name hosts, keys and ports: for staff, not for customers.
        connection = exc.__class__(
            "our hosting server did not answer as expected", permanent=exc.permanent
        )
        connection.detail = exc.detail or exc.message
        connection.clean = exc.clean
        connection.node_id = exc.node_id
        return connection
    if isinstance(exc, StepError):
        return exc
    log.exception("unexpected error in a provisioning step")
    error = PermanentStepError("an unexpected error stopped it on our side; support is told")
    error.detail = f"unexpected error: {exc!r}"
    return error


def _staff_text(error: StepError) -> str:
    """The technical account of an error, for the step record and the operation's error."""
    return f"{error.message} ({error.detail})" if error.detail else error.message


def _customer_sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def backoff(attempt: int) -> int:
    return int(min(settings.PROVISIONING_RETRY_BACKOFF * 2 ** max(attempt - 1, 0), 300))


def waits_for_node(error: StepError | None) -> bool:
    """A node that did not answer, or presented a host key that is not pinned: nothing was
    asked of it, so its work waits (the breaker paces the tries) instead of failing."""
    return isinstance(error, NodeUnreachable | HostKeyRefused)


def _tries(operation: Operation, position: int, direction: str) -> int:
    """Failed tries of a step (or its undo) since its node last failed to answer.

    A node that went away takes its daemons with it: the first tries after it is back may
    find one still starting. An outage therefore starts the count again, so the retries a
    step gets are never used up by the time its node was gone.
    """
    runs = (
        _runs_since_start(operation)
        .filter(position=position, direction=direction)
        .exclude(status=StepRun.Status.RUNNING)
        .order_by("-started_at", "-id")
        .values_list("status", "node_unreachable")
    )
    tries = 0
    for status, unreachable in runs:
        if unreachable:
            break
        tries += status == StepRun.Status.FAILED
    return tries


def _record_node_outcome(
    node_id: int | None, error: StepError | None, *, closed_at_claim: bool = False
) -> None:
    """Tell the breaker of the node the step spoke to whether it answered. A success on a
    node whose breaker had nothing on record when the step was claimed has nothing to close
    (and costs no query)."""
    if error is not None and waits_for_node(error):
        failed = error.node_id or node_id
        if failed is not None:
            breaker.breaker_record_failure(node_id=failed, error=_staff_text(error))
    elif error is None and node_id is not None and not closed_at_claim:
        breaker.breaker_record_success(node_id=node_id)


def step_execute(*, operation_id: int, position: int) -> tuple[str, int]:
    """Run one step of an operation. Returns (outcome, retry countdown in seconds)."""
    stale_before = timezone.now() - timedelta(seconds=settings.PROVISIONING_STALE_AFTER)
    with transaction.atomic():
        operation = _locked(operation_id)
        if operation.state not in (Operation.State.QUEUED, *APPLY_STATES):
            return SKIPPED, 0
        if operation.current_step != position:
            return SKIPPED, 0
        kind = get_kind(operation.kind)
        step_cls = kind.steps[position]
        # Earlier attempts of this step, in one query: one still running blocks this claim
        # unless its worker stopped; their number makes this attempt's.
        earlier = list(
            _runs_since_start(operation)
            .filter(position=position, direction="apply")
            .values_list("pk", "status", "started_at")
        )
        for run_id, status, started_at in earlier:
            if status != StepRun.Status.RUNNING:
                continue
            if started_at > stale_before:
                return BUSY, 0
            StepRun.objects.filter(pk=run_id).update(
                status=StepRun.Status.FAILED,
                error="the worker stopped during this step; the outcome is unknown",
                finished_at=timezone.now(),
            )
        step_node = step_cls.node_for(operation)
        node_id = step_node.pk if step_node is not None else None
        # The node row came with the operation: only a node whose breaker has something on
        # record needs the breaker's locked look (most steps run on a node that answers).
        breaker_closed = step_node is None or not breaker.breaker_state_recorded(step_node)
        if node_id is not None and not breaker_closed:
            verdict = breaker.breaker_allow(node_id=node_id)
            if not verdict.allowed:
                # The node is down: wait without using up an attempt or failing anything.
                note(operation, verdict.message, actor_label="worker")
                operation.heartbeat_at = timezone.now()
                operation.save(update_fields=["heartbeat_at"])
                return RETRY, verdict.retry_in
        _enter_phase(operation, step_cls)
        attempt = len(earlier) + 1
        step_run = StepRun.objects.create(
            operation=operation,
            position=position,
            step=step_cls.name,
            node=step_node,
            attempt=attempt,
        )
        # The sweeper goes by the heartbeat (minutes); the previous step's end, or the phase
        # change just saved, is a heartbeat as good as a new one.
        if timezone.now() - operation.heartbeat_at > HEARTBEAT_FRESH:
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["heartbeat_at"])

    step = step_cls()
    error: StepError | None = None
    ctx: StepContext | None = None
    try:
        ctx = step_cls.context(operation=operation, step_run=step_run)
        _failpoint(operation, step, "before")
        step.apply(ctx)
        _failpoint(operation, step, "after")
    except Exception as exc:
        error = _as_step_error(exc)

    _record_node_outcome(node_id, error, closed_at_claim=breaker_closed)

    last = position + 1 == len(kind.steps)
    with transaction.atomic():
        step_run.finished_at = timezone.now()
        step_run.status = StepRun.Status.SUCCEEDED if error is None else StepRun.Status.FAILED
        step_run.error = "" if error is None else _staff_text(error)
        step_run.nothing_changed = bool(error is not None and error.clean)
        step_run.node_unreachable = waits_for_node(error)
        step_run.save()
        if error is None and not last and not (ctx is not None and ctx.service_updates):
            # The common case in one statement: move on, unless staff rolled it back meanwhile
            # (the same check as below, made by the update's own row lock).
            moved = Operation.objects.filter(
                pk=operation_id, state__in=APPLY_STATES, current_step=position
            ).update(current_step=position + 1, heartbeat_at=timezone.now())
            return (DONE, 0) if moved else (SKIPPED, 0)
        # Only the row itself: what the step needed from related rows was loaded at claim.
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        if operation.state not in APPLY_STATES or operation.current_step != position:
            return SKIPPED, 0  # staff rolled it back meanwhile
        if error is None:
            operation.current_step = position + 1
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["current_step", "heartbeat_at"])
            if ctx is not None and ctx.service_updates:
                service = Service.objects.select_for_update().get(pk=operation.service_id)
                for key, value in ctx.service_updates.items():
                    setattr(service, key, value)
                service.save(update_fields=list(ctx.service_updates))
            if operation.current_step == len(kind.steps):
                # The last step: complete in this same transaction rather than one task
                # later (the chain's finishing task then finds nothing to do).
                record_transition(
                    operation, "complete", actor_label="worker", detail="all steps done"
                )
                _service_hook(operation, kind.on_completed)
            return DONE, 0
        if waits_for_node(error):
            # A node that does not answer pauses its work (the breaker decides when to try
            # again) instead of failing it: nothing was done, so nothing needs undoing.
            countdown = min(backoff(attempt), 60)
            note(
                operation,
                f"{_staff_text(error)}; step {step_cls.name} waits for the node (try {attempt})",
                actor_label="worker",
            )
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["heartbeat_at"])
            return RETRY, countdown
        failures = _tries(operation, position, StepRun.Direction.APPLY)
        if not error.permanent and failures <= settings.PROVISIONING_STEP_RETRIES:
            countdown = backoff(failures)
            note(
                operation,
                f"step {step_cls.name} attempt {attempt} failed ({_staff_text(error)}); "
                f"retrying in {countdown} s",
                actor_label="worker",
            )
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["heartbeat_at"])
            return RETRY, countdown
        tries = f" after {attempt} attempts" if attempt > 1 else ""
        # The reason is the customer's (panel, API, webhooks); which step, how often and the
        # command's output are staff's, in the operation's error and the step record.
        begin_rollback(
            operation,
            reason=_customer_sentence(error.message),
            error=f"Step {step_cls.name} failed{tries}: {_staff_text(error)}",
        )
        return FAILED, 0


def begin_rollback(
    operation: Operation, *, reason: str, error: str = "", actor: User | None = None
) -> None:
    """Mark a locked operation failed and queue the undo of what it did."""
    if operation.state != Operation.State.FAILED:
        record_transition(
            operation,
            "fail",
            actor=actor,
            actor_label="" if actor else "worker",
            detail=reason,
            reason=reason,
            error=error,
        )
    record_transition(
        operation,
        "start_rollback",
        actor=actor,
        actor_label="" if actor else "worker",
        detail="undoing the completed steps in reverse order",
        reason=reason,
    )
    operation_id = operation.pk
    transaction.on_commit(lambda: queue_rollback(operation_id))


def operation_finish(*, operation_id: int) -> str:
    """Complete an operation whose steps all succeeded, and update its service."""
    with transaction.atomic():
        operation = _locked(operation_id)
        kind = get_kind(operation.kind)
        if operation.state not in APPLY_STATES or operation.current_step != len(kind.steps):
            return SKIPPED
        record_transition(operation, "complete", actor_label="worker", detail="all steps done")
        _service_hook(operation, kind.on_completed)
        return DONE


def _service_hook(operation: Operation, hook: Any) -> None:
    if hook is None:
        return
    service = Service.objects.select_for_update().get(pk=operation.service_id)
    fields = hook(service, operation)
    if fields:
        service.save(update_fields=[*fields, "updated_at"])


def _undo_positions(operation: Operation) -> list[int]:
    """Steps to compensate: those that succeeded or failed part-way, last first."""
    positions = set()
    for run in _runs_since_start(operation).filter(direction="apply"):
        if run.status == StepRun.Status.SUCCEEDED or not run.nothing_changed:
            positions.add(run.position)
    return sorted(positions, reverse=True)


def rollback_execute(*, operation_id: int) -> tuple[str, int]:
    """Undo the operation's steps in reverse order; idempotent, resumable.

    A node that does not answer pauses the undo (its circuit breaker paces the tries), as it
    pauses steps: a rollback never fails for an outage, it waits for the node.

    An undo another worker is running (started within PROVISIONING_STALE_AFTER) is left to
    it: a second copy of this task then does nothing, so no undo ever runs twice at once.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.PROVISIONING_STALE_AFTER)
    with transaction.atomic():
        operation = _locked(operation_id)
        if operation.state != Operation.State.ROLLING_BACK:
            return SKIPPED, 0
        kind = get_kind(operation.kind)
        positions = _undo_positions(operation)
        operation.heartbeat_at = timezone.now()
        operation.save(update_fields=["heartbeat_at"])

    for position in positions:
        step_cls = kind.steps[position]
        with transaction.atomic():
            operation = _locked(operation_id)
            if operation.state != Operation.State.ROLLING_BACK:
                return SKIPPED, 0
            undo_runs = _runs_since_start(operation).filter(position=position, direction="undo")
            if undo_runs.filter(status=StepRun.Status.SUCCEEDED).exists():
                continue
            if undo_runs.filter(
                status=StepRun.Status.RUNNING, started_at__gt=stale_before
            ).exists():
                return BUSY, 0
            undo_runs.filter(status=StepRun.Status.RUNNING).update(
                status=StepRun.Status.FAILED,
                error="the worker stopped during this undo; it is run again",
                finished_at=timezone.now(),
            )
            step_node = step_cls.node_for(operation)
            node_id = step_node.pk if step_node is not None else None
            if node_id is not None:
                verdict = breaker.breaker_allow(node_id=node_id)
                if not verdict.allowed:
                    # Nothing is undone against a node that cannot answer: wait for it.
                    note(operation, verdict.message, actor_label="worker")
                    operation.heartbeat_at = timezone.now()
                    operation.save(update_fields=["heartbeat_at"])
                    return RETRY, verdict.retry_in
            attempt = undo_runs.count() + 1
            step_run = StepRun.objects.create(
                operation=operation,
                position=position,
                step=step_cls.name,
                direction=StepRun.Direction.UNDO,
                node=step_node,
                attempt=attempt,
            )
        error: StepError | None = None
        try:
            step_cls().undo(step_cls.context(operation=operation, step_run=step_run))
        except Exception as exc:
            error = _as_step_error(exc)
        _record_node_outcome(node_id, error)
        with transaction.atomic():
            step_run.finished_at = timezone.now()
            step_run.status = StepRun.Status.SUCCEEDED if error is None else StepRun.Status.FAILED
            step_run.error = "" if error is None else _staff_text(error)
            step_run.node_unreachable = waits_for_node(error)
            step_run.save()
            operation = _locked(operation_id)
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["heartbeat_at"])
            if error is None:
                continue
            if waits_for_node(error):
                # The node did not answer, so nothing was undone yet: wait for it (the
                # breaker paces the tries) instead of failing the rollback.
                note(
                    operation,
                    f"{error.message}; the undo of {step_cls.name} waits for the node "
                    f"(try {attempt})",
                    actor_label="worker",
                )
                return RETRY, min(backoff(attempt), 60)
            failures = _tries(operation, position, StepRun.Direction.UNDO)
            if not error.permanent and failures <= settings.PROVISIONING_STEP_RETRIES:
                return RETRY, backoff(failures)
            reason = (
                f"{operation.reason} Undoing it did not finish either; support will clean up "
                "what is left."
            )
            staff = (
                f"The undo of step {step_cls.name} failed: {_staff_text(error)}. The node may "
                "hold leftovers of this operation: fix the cause and roll back again."
            )
            record_transition(
                operation,
                "fail",
                actor_label="worker",
                detail=staff,
                reason=reason,
                error=f"{operation.error} {staff}".strip(),
            )
            return FAILED, 0

    with transaction.atomic():
        operation = _locked(operation_id)
        if operation.state != Operation.State.ROLLING_BACK:
            return SKIPPED, 0
        undone = ", ".join(kind.steps[p].name for p in positions) or "nothing to undo"
        reason = operation.reason or "Rolled back."
        if "undone" not in reason:
            reason = reason if reason.endswith(".") else f"{reason}."
            reason = f"{reason} Everything it had done was undone."
        operation.reason = reason
        record_transition(
            operation, "finish_rollback", actor_label="worker", detail=f"{reason} ({undone})"
        )
        _service_hook(operation, get_kind(operation.kind).on_rolled_back)
        return DONE, 0


def operations_sweep(
    *, stale_after: int | None = None, queued_after: int | None = None
) -> dict[str, int]:
    """Resume or roll back operations whose worker stopped (killed, lost, never started).

    An operation is stale when its heartbeat did not move for ``stale_after`` seconds, longer
    than any step may run. Its step that was running is marked failed with an unknown
    outcome; the chain is queued again from that step (whose apply looks at the node first),
    up to PROVISIONING_MAX_RESUMES times, after which the operation is rolled back.
    An operation whose node is paused by the circuit breaker is only queued again to wait:
    a node outage, however long, never uses up resumes nor ends in a rollback.

    An operation still queued after ``queued_after`` seconds, with no step ever claimed, is
    sent to the workers again (its message may have been lost with a worker). Nothing of it
    ran, and a step is claimed under the operation's row lock, so if the first message turns
    up after all, one of the two copies finds the step taken and does nothing. This does not
    count as a resume: an operation waiting behind a long queue is never rolled back for it.
    """
    seconds = settings.PROVISIONING_STALE_AFTER if stale_after is None else stale_after
    queued_seconds = (
        settings.PROVISIONING_QUEUED_STALE_AFTER if queued_after is None else queued_after
    )
    requeued = 0
    queued_cutoff = timezone.now() - timedelta(seconds=queued_seconds)
    queued_ids = list(
        Operation.objects.filter(
            state=Operation.State.QUEUED, heartbeat_at__lte=queued_cutoff
        ).values_list("pk", flat=True)
    )
    for operation_id in queued_ids:
        with transaction.atomic():
            operation = _locked(operation_id)
            if operation.state != Operation.State.QUEUED or operation.heartbeat_at > queued_cutoff:
                continue
            if StepRun.objects.filter(operation=operation).exists():
                continue  # a step was claimed: the stale rule below applies
            waited = int((timezone.now() - operation.heartbeat_at).total_seconds())
            operation.heartbeat_at = timezone.now()
            operation.save(update_fields=["heartbeat_at"])
            note(
                operation,
                f"still queued after {waited} s; sent to the workers again",
                actor_label="sweeper",
            )
            _requeue(operation)
            requeued += 1
    counts = _resume_stale(cutoff=timezone.now() - timedelta(seconds=seconds))
    counts["requeued"] = requeued
    return counts


def operations_recover_after_worker_loss() -> dict[str, int]:
    """Resume every unfinished operation at once, after the only worker died.

    For a supervisor that runs the one worker there is (``manage.py rundemo``) and calls
    this after it died and before it starts the next: no step can be running anywhere then,
    so waiting PROVISIONING_STALE_AFTER to be sure would only keep the customer waiting.
    Never call it while another worker may be running steps.
    """
    counts = _resume_stale(cutoff=timezone.now())
    counts["requeued"] = 0
    return counts


def _resume_stale(*, cutoff: datetime) -> dict[str, int]:
    """Resume, or roll back, the running operations whose heartbeat is not after ``cutoff``."""
    counts = {"resumed": 0, "rolled_back": 0, "rollback_resumed": 0, "waiting_for_node": 0}
    stale_ids = list(
        Operation.objects.filter(
            state__in=Operation.RUNNING_STATES, heartbeat_at__lte=cutoff
        ).values_list("pk", flat=True)
    )
    for operation_id in stale_ids:
        with transaction.atomic():
            operation = _locked(operation_id)
            if operation.state not in Operation.RUNNING_STATES or operation.heartbeat_at > cutoff:
                continue
            StepRun.objects.filter(operation=operation, status=StepRun.Status.RUNNING).update(
                status=StepRun.Status.FAILED,
                error="the worker stopped during this step; the outcome is unknown",
                finished_at=timezone.now(),
            )
            operation.heartbeat_at = timezone.now()
            node = operation.service.node
            if node is not None and breaker.breaker_pauses(node):
                # Paused by the node's circuit breaker, however long the node has been gone:
                # queued again to wait for it, never counted as lost nor rolled back.
                operation.save(update_fields=["heartbeat_at"])
                note(
                    operation,
                    f"waits for {node.name}, which is not answering; queued again "
                    "(never rolled back for an outage)",
                    actor_label="sweeper",
                )
                _requeue(operation)
                counts["waiting_for_node"] += 1
                continue
            if operation.resumes >= settings.PROVISIONING_MAX_RESUMES:
                if operation.state == Operation.State.ROLLING_BACK:
                    reason = (
                        f"{operation.reason} The rollback stopped moving {operation.resumes} "
                        "times; check the node and roll back again."
                    )
                    record_transition(
                        operation, "fail", actor_label="sweeper", detail=reason, reason=reason
                    )
                else:
                    begin_rollback(
                        operation,
                        reason=f"The operation stopped moving {operation.resumes + 1} times "
                        "(workers lost); it was rolled back.",
                    )
                    counts["rolled_back"] += 1
                continue
            operation.resumes += 1
            operation.save(update_fields=["heartbeat_at", "resumes"])
            note(
                operation,
                f"stopped moving; resumed (resume {operation.resumes})",
                actor_label="sweeper",
            )
            _requeue(operation)
            if operation.state == Operation.State.ROLLING_BACK:
                counts["rollback_resumed"] += 1
            else:
                counts["resumed"] += 1
    return counts


def _requeue(operation: Operation) -> None:
    """Queue a stopped operation's chain (or its rollback) again once this transaction commits."""
    oid, start = operation.pk, operation.current_step
    if operation.state == Operation.State.ROLLING_BACK:
        transaction.on_commit(lambda: queue_rollback(oid))
    else:
        transaction.on_commit(lambda: queue_chain(oid, start))


def kind_of(operation: Operation) -> OperationKind:
    return get_kind(operation.kind)
