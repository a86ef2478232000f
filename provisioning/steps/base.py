"""The step framework: how an operation becomes work on a node.

A **step** is a subclass of ``Step`` with a unique ``name``, a ``phase`` (``validating``,
``provisioning`` or ``configuring``: the operation's state while it runs), and two methods:

``apply(ctx)``
    Idempotent. The node agent's ensure actions look at the node before they act, so
    running a step twice leaves one resource, never two; running it after a timeout whose
    outcome is unknown finishes the work or finds it done.
``undo(ctx)``
    Compensation, also idempotent: remove what ``apply`` may have created, checking the
    node first. It runs for every step that succeeded *or* failed part-way, in reverse
    order, when the operation finally fails. It must not fail because the resource is
    missing.

Both talk to the node through ``ctx.agent([...])``: node agent actions built with
``provisioning.ssh.action(name, **args)`` from values that went through
``provisioning.validators`` first (the agent checks them again). Each ``ctx.agent`` call is
one request on the node's open channel (a few milliseconds), so send a step's actions
together; they run in order and the first failure stops the rest.
Raise ``TransientStepError`` for what a retry can fix and ``PermanentStepError`` for what it
cannot; a failed action raises one for you (the agent says whether a retry can help). An
error's ``message`` is what the customer reads; its ``detail`` (the action, the agent's code
and output) stays in the admin's step record. Pass
``clean=True`` when the failure happened before anything changed on the node, so the
rollback can skip this step.


An **operation kind** is an ordered list of steps plus what happens to the service when the
operation completes or is rolled back. Every kind is declared, with its whole step list, in
``provisioning.kinds`` (the one registry: no module adds to another's list)::

    OperationKind(
        name="database_create",
        steps=(DatabaseLimit, Database, DatabaseUser),
        on_completed=None,          # or a function(service, operation) -> list of fields saved
        on_rolled_back=None,
    )

Start one with
``provisioning.services.operation_start(service=..., kind="database_create", params={...})``.
The workflow (``provisioning.workflow``) turns the list into a Celery chain, one task per
step, with retries, events, step-run records, the sweeper and the rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Plan
from provisioning import nodes, ssh
from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import LIVE_SERVICE_STATES, Node, NodeResource, Operation, Service, StepRun

TAIL_CHARS = 4000


class StepContext:
    """What a step sees: the operation, its service, node and plan, and ``agent``."""

    def __init__(
        self, *, operation: Operation, step_run: StepRun, node: Node | None = None
    ) -> None:
        self.operation = operation
        self.service: Service = operation.service
        node = node or self.service.node
        if node is None:
            raise PermanentStepError("the service has no node")
        self.node: Node = node
        self.step_run = step_run
        self.params: dict[str, Any] = operation.params or {}
        self.service_updates: dict[str, Any] = {}

    @property
    def plan(self) -> Plan:
        """The plan this operation applies (the new one for a plan change)."""
        plan_id = self.params.get("plan_id")
        if plan_id:
            return Plan.objects.get(pk=plan_id)
        return self.service.plan

    @property
    def previous_plan(self) -> Plan:
        plan_id = self.params.get("previous_plan_id")
        return Plan.objects.get(pk=plan_id) if plan_id else self.service.plan

    def target(self, node: Node | None = None) -> ssh.Target:
        return nodes.node_target(node or self.node)

    def agent(
        self, actions: list[ssh.AgentAction], *, check: bool = True, node: Node | None = None
    ) -> list[ssh.ActionResult]:
        """Send actions to the node agent as one request and record each on the step run.

        They go to the step's node, or to ``node`` (a move speaks to two nodes in one step).

        Each action is recorded with its arguments (secret ones as ``***``), its outcome and
        its duration. With ``check`` the first failed action raises: ``TransientStepError``
        when the agent says a retry can help, ``PermanentStepError`` otherwise, carrying the
        agent's code and its message (written for customers; the operator's detail goes to
        the step run's output).
        """
        result = ssh.call(
            self.target(node),
            actions,
            key_path=settings.PROVISIONING_SSH_KEY,
            timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
        )
        secrets_ = [v for a in actions for v in a.secret_values()]
        sr = self.step_run
        records = []
        details = []
        for a, r in zip(actions, result.results, strict=False):
            outcome = 0 if r.ok else (-1 if r.skipped else 1)
            records.append({"cmd": a.display(), "exit": outcome, "ms": r.ms})
            if r.error:
                details.append(f"{a.name}: {r.error.get('code')}: {r.error.get('message')}")
                if r.error.get("detail"):
                    details.append(str(r.error["detail"]))
        if result.error:
            details.append(f"request refused: {result.error.get('message')}")
        sr.commands = [*sr.commands, *records]
        if details:
            text = ssh.redact("\n".join(details) + "\n", secrets_)
            sr.stderr_tail = (sr.stderr_tail + text)[-TAIL_CHARS:]
        failure = result.failure()
        if check and failure is not None:
            failed, error = failure
            code = str(error.get("code") or "failed")
            message = ssh.redact(str(error.get("message") or "the node agent failed"), secrets_)
            clean = code in ssh.REFUSED_BEFORE_ACTING or (
                not error.get("changed")
                and failed is not None
                and all(not r.changed for r in result.results[: result.results.index(failed)])
                and code in ("not_found", "conflict", "unsafe_path", "not_prepared", "unavailable")
            )
            if error.get("permanent", True):
                raise PermanentStepError(message, clean=clean, code=code)
            raise TransientStepError(message, clean=clean, code=code)
        return result.results

    def applied_resources(self) -> dict[str, Any]:
        """What this step's apply runs in this operation recorded with ``resource`` (for an
        undo: remove only what this operation created)."""
        merged: dict[str, Any] = {}
        for resources in StepRun.objects.filter(
            operation=self.operation,
            position=self.step_run.position,
            direction=StepRun.Direction.APPLY,
        ).values_list("resources", flat=True):
            merged.update(resources or {})
        return merged

    def resource(self, key: str, value: Any) -> None:
        """Note a resource id this step created (shown in the admin timeline)."""
        self.step_run.resources = {**self.step_run.resources, key: value}

    # --- what the service holds on the node (``NodeResource`` rows) ------------------------

    def _holder(self, kind: str, name: str) -> NodeResource | None:
        return (
            NodeResource.objects.select_for_update()
            .select_related("service")
            .filter(
                node=self.node, kind=kind, name__iexact=name, state__in=NodeResource.LIVE_STATES
            )
            .first()
        )

    def _refuse_other_holder(self, held: NodeResource | None, kind: str, name: str) -> None:
        if (
            held is not None
            and held.service_id != self.service.pk
            and held.service.state in LIVE_SERVICE_STATES
        ):
            raise PermanentStepError(
                f"{name} ({NodeResource.Kind(kind).label.lower()}) belongs to another account "
                "on this server",
                clean=True,
                code="conflict",
            )

    def check_free(self, kind: str, name: str) -> None:
        """Refuse (before anything is sent to the node) a name another live service holds."""
        with transaction.atomic():
            self._refuse_other_holder(self._holder(kind, name), kind, name)

    def own(
        self,
        kind: str,
        name: str,
        *,
        created: bool = True,
        detail: dict[str, Any] | None = None,
    ) -> NodeResource:
        """Record that the service holds ``name`` of ``kind`` on its node, made by this step
        (``created``) or found there and taken over. A row the service already holds stays
        the one that counts (its maker is unchanged; ``detail`` is updated). A row of a
        service that is no longer live (failed or terminated) is taken over: it is marked
        gone and this service's row replaces it. A live service's row is refused.
        """
        with transaction.atomic():
            held = self._holder(kind, name)
            self._refuse_other_holder(held, kind, name)
            if held is not None and held.service_id == self.service.pk:
                if detail is not None and held.detail != detail:
                    held.detail = detail
                    held.save(update_fields=["detail", "updated_at"])
                return held
            if held is not None:
                held.state = NodeResource.State.GONE
                held.removed_at = timezone.now()
                held.removed_by = self.operation
                held.detail = {**held.detail, "taken_over_by_service": self.service.pk}
                held.save(update_fields=["state", "removed_at", "removed_by", "detail"])
                created = False
            return NodeResource.objects.create(
                service=self.service,
                node=self.node,
                kind=kind,
                name=name,
                created=created,
                operation=self.operation,
                step_run=self.step_run,
                detail=detail or {},
            )

    def owned(self, *kinds: str, name: str | None = None) -> list[NodeResource]:
        """The service's live rows of these kinds on its node (all kinds when none given)."""
        rows = NodeResource.objects.filter(
            service=self.service, node=self.node, state__in=NodeResource.LIVE_STATES
        )
        if kinds:
            rows = rows.filter(kind__in=kinds)
        if name is not None:
            rows = rows.filter(name__iexact=name)
        return list(rows.order_by("id"))

    def made_here(self, *kinds: str, name: str | None = None) -> list[NodeResource]:
        """The live rows of these kinds that this step of this operation recorded: what its
        undo may touch (rows with ``created`` false were there before: the undo only lets
        go of them, see ``disown``)."""
        rows = NodeResource.objects.filter(
            service=self.service,
            operation=self.operation,
            step_run__position=self.step_run.position,
            state__in=NodeResource.LIVE_STATES,
        )
        if kinds:
            rows = rows.filter(kind__in=kinds)
        if name is not None:
            rows = rows.filter(name__iexact=name)
        return list(rows.order_by("id"))

    def removing(self, rows: list[NodeResource]) -> None:
        """Mark rows as being removed (before the node is asked to remove them)."""
        ids = [r.pk for r in rows]
        NodeResource.objects.filter(pk__in=ids, state=NodeResource.State.PRESENT).update(
            state=NodeResource.State.REMOVING, updated_at=timezone.now()
        )

    def remove_owned(self, rows: list[NodeResource], actions: list[ssh.AgentAction]) -> None:
        """Remove rows' resources from the node (one request) and mark the rows gone."""
        if not rows:
            return
        self.removing(rows)
        if actions:
            self.agent(actions)
        self.disown(rows)

    def undo_owned(
        self, *kinds: str, actions: Callable[[NodeResource], list[ssh.AgentAction]]
    ) -> None:
        """The undo of a step that recorded rows: what this step of this operation made goes
        (``actions`` removes one row's resource); what it found there stays, let go of."""
        rows = self.made_here(*kinds)
        made = [r for r in rows if r.created]
        self.remove_owned(made, [a for r in made for a in actions(r)])
        self.disown([r for r in rows if not r.created])

    def disown(self, rows: list[NodeResource]) -> None:
        """Mark rows gone: removed from the node, or let go of without touching it."""
        ids = [r.pk for r in rows]
        NodeResource.objects.filter(pk__in=ids, state__in=NodeResource.LIVE_STATES).update(
            state=NodeResource.State.GONE,
            removed_at=timezone.now(),
            removed_by=self.operation,
            updated_at=timezone.now(),
        )


class Step:
    """Base class of all steps; see the module docstring."""

    name: ClassVar[str] = ""
    phase: ClassVar[str] = "provisioning"

    def apply(self, ctx: StepContext) -> None:
        raise NotImplementedError

    def undo(self, ctx: StepContext) -> None:
        """Nothing to compensate by default (read-only steps)."""

    @classmethod
    def node_for(cls, operation: Operation) -> Node | None:
        """The node this step works on (its circuit breaker paces it): the service's. A step
        of a move names the old or the new node instead."""
        return operation.service.node

    @classmethod
    def context(cls, *, operation: Operation, step_run: StepRun) -> StepContext:
        """What ``apply`` and ``undo`` get; a step working on another node than the service's
        gets a context on that node."""
        return StepContext(operation=operation, step_run=step_run, node=cls.node_for(operation))


@dataclass
class OperationKind:
    name: str
    steps: tuple[type[Step], ...]
    on_completed: Callable[[Service, Operation], list[str]] | None = None
    on_rolled_back: Callable[[Service, Operation], list[str]] | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, OperationKind] = {}


def register_kind(kind: OperationKind) -> OperationKind:
    """Add a kind (``provisioning.kinds`` adds every built-in one). A name is declared once:
    a kind's step list is never changed from elsewhere."""
    names = [s.name for s in kind.steps]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"steps of {kind.name} need unique, non-empty names: {names}")
    if kind.name in KINDS:
        raise ValueError(f"operation kind {kind.name!r} is declared twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> OperationKind:
    from provisioning import kinds  # noqa: F401  (declares the built-in kinds)

    try:
        return KINDS[name]
    except KeyError:
        raise PermanentStepError(f"unknown operation kind {name!r}") from None
