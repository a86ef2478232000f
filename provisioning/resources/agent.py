"""How resource steps speak to the node agent, and what they record for their undo.

Each ensure action answers whether it created what it reports; a step records that on its
step run (``created`` and similar keys), and its undo removes only what its own operation
created. Termination removes what one of the service's operations created and did not roll
back, and nothing else.
"""

from __future__ import annotations

from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import Service, StepRun
from provisioning.ssh import ActionResult
from provisioning.steps.base import StepContext


def applied(ctx: StepContext, step: str, key: str) -> bool:
    """Whether an apply of ``step`` in this operation recorded ``key`` as true (an ensure
    that created its resource): an undo removes only what its own operation created."""
    runs = StepRun.objects.filter(operation=ctx.operation, step=step, direction="apply")
    return any(run.resources.get(key) for run in runs)


def created_by_service(service: Service, step: str, keys: tuple[str, ...]) -> bool:
    """Whether one of the service's operations created the resource of ``step`` and was not
    rolled back since: what termination may remove, and nothing else (a zone or certificate
    that existed before, or that another service holds, stays)."""
    runs = StepRun.objects.filter(operation__service=service, step=step)
    made = {
        r.operation_id
        for r in runs
        if r.direction == "apply" and any(r.resources.get(k) for k in keys)
    }
    undone = {
        r.operation_id
        for r in runs
        if r.direction == "undo" and r.status == StepRun.Status.SUCCEEDED
    }
    return bool(made - undone)


def agent_failure(result: ActionResult) -> Exception:
    """The step error for an action that failed, with the agent's message (written for the
    customer; the operator's detail is in the step run's output)."""
    error = result.error or {}
    message = str(error.get("message") or "the node agent failed")
    code = str(error.get("code") or "failed")
    clean = not error.get("changed")
    failure: PermanentStepError | TransientStepError
    if error.get("permanent", True):
        failure = PermanentStepError(message, clean=clean, code=code)
    else:
        failure = TransientStepError(message, clean=clean, code=code)
    failure.detail = f"{result.action}: {code}: {error.get('detail') or message}"
    return failure
