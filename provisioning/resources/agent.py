"""How resource steps speak to the node agent, and what they record for their undo.

Each ensure action answers whether it created what it reports; a step records that on its
step run (``created`` and similar keys), and its undo removes only what its own operation
created. What a service holds on a node is recorded as ``NodeResource`` rows through
``StepContext.own``: undos and termination work from those rows.
"""

from __future__ import annotations

from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import StepRun
from provisioning.ssh import ActionResult
from provisioning.steps.base import StepContext


def applied(ctx: StepContext, step: str, key: str) -> bool:
    """Whether an apply of ``step`` in this operation recorded ``key`` as true (an ensure
    that created its resource): an undo removes only what its own operation created."""
    runs = StepRun.objects.filter(operation=ctx.operation, step=step, direction="apply")
    return any(run.resources.get(key) for run in runs)


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
