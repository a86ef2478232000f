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

from billing.models import Plan
from provisioning import nodes, ssh
from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import Node, Operation, Service, StepRun

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
