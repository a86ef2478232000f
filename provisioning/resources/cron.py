"""Customer cron jobs: the checks, the services that start their operations, and the steps.

A ``CronJob`` row is what the customer asked for (its values checked by
``provisioning.validators.validate_cron_schedule`` and ``validate_cron_command``).
``cron_job_save`` writes it (``pending``) and starts ``cron_ensure``, whose step sends the node
agent's ``cron.ensure`` with the values in the operation's params (the agent checks them
again); ``cron_job_delete`` starts ``cron_remove``. When the operation completes the row is
``active`` (or gone, for a removal); when it is rolled back the row is put back as it was (a
new job's row goes).

On the node (``deploy/node/agent/hwagent/cron.py``) a job runs as the account's Linux user: a
systemd timer and service in the account's slice on systemd nodes, a line of the account's
crontab elsewhere. The plan's ``cron_jobs`` caps how many jobs an account has.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import User
from provisioning import services as engine
from provisioning import validators
from provisioning.errors import ProvisioningRefused
from provisioning.models import CronJob, NodeResource, Operation, Service
from provisioning.ssh import action
from provisioning.steps.base import Step, StepContext


def _job_params(job: CronJob) -> dict[str, Any]:
    return {
        "job_id": job.pk,
        "schedule": job.schedule,
        "command": job.command,
        "output": job.output,
        "mail_to": job.mail_to,
        "enabled": job.enabled,
    }


def _cleaned(
    *, schedule: str, command: str, output: str, mail_to: str, default_mail_to: str
) -> dict[str, Any]:
    if output not in CronJob.Output.values:
        raise ProvisioningRefused("Choose whether the output is logged or mailed.", code="output")
    address = ""
    if output == CronJob.Output.MAILED:
        try:
            address = validators.validate_email(mail_to or default_mail_to)
        except ProvisioningRefused as exc:
            raise ProvisioningRefused(exc.messages[0], code="mail_to") from None
    return {
        "schedule": validators.validate_cron_schedule(schedule),
        "command": validators.validate_cron_command(command),
        "output": output,
        "mail_to": address,
    }


@transaction.atomic
def cron_job_save(
    *,
    service: Service,
    job: CronJob | None = None,
    schedule: str,
    command: str,
    output: str = CronJob.Output.LOGGED,
    mail_to: str = "",
    enabled: bool = True,
    actor: User | None = None,
) -> Operation:
    """Add a cron job (``job=None``) or change one, and start ``cron_ensure`` for it.

    Checks every value first, and the plan's number of cron jobs for a new one. Mailed output
    goes to ``mail_to``, or to the signed-in customer's address when it is empty.
    """
    values = _cleaned(
        schedule=schedule,
        command=command,
        output=output,
        mail_to=mail_to,
        default_mail_to=actor.email if actor is not None else "",
    )
    locked = Service.objects.select_for_update().select_related("plan").get(pk=service.pk)
    previous: dict[str, Any] | None = None
    if job is None:
        allowed = int(locked.plan.cron_jobs)
        if CronJob.objects.filter(service=locked).count() >= allowed:
            raise ProvisioningRefused(
                f"Your plan includes {allowed} cron job{'s' if allowed != 1 else ''}: remove "
                "one or change to a larger plan.",
                code="limit",
            )
        job = CronJob.objects.create(service=locked, enabled=enabled, **values)
    else:
        job = CronJob.objects.select_for_update().get(pk=job.pk, service=locked)
        previous = _job_params(job)
        for name, value in {**values, "enabled": enabled}.items():
            setattr(job, name, value)
        job.state = CronJob.State.PENDING
        job.save()
    params = {**_job_params(job), "previous": previous}
    return engine.operation_start(service=locked, kind="cron_ensure", params=params, actor=actor)


@transaction.atomic
def cron_job_delete(*, service: Service, job: CronJob, actor: User | None = None) -> Operation:
    """Start ``cron_remove`` for one of the account's jobs (the row goes when it completes)."""
    job = CronJob.objects.select_for_update().get(pk=job.pk, service=service)
    return engine.operation_start(
        service=service, kind="cron_remove", params=_job_params(job), actor=actor
    )


# --- steps ------------------------------------------------------------------------------------


def _ensure_action(ctx: StepContext, values: dict[str, Any]) -> Any:
    mailed = values["output"] == CronJob.Output.MAILED
    # Mail leaves as the account's own domain: the node's mail filter refuses any other sender.
    sender = f"cron@{validators.domain_to_ascii(ctx.service.domain)}" if mailed else ""
    return action(
        "cron.ensure",
        user=validators.validate_username(ctx.service.username),
        job=validators.validate_positive_int(values["job_id"], name="cron job", maximum=10**12),
        schedule_text=validators.validate_cron_schedule(values["schedule"]),
        command_text=validators.validate_cron_command(values["command"]),
        output=str(values["output"]),
        mail_to=str(values.get("mail_to") or ""),
        mail_from=sender,
        enabled=bool(values["enabled"]),
    )


def _remove_action(ctx: StepContext, job_id: object) -> Any:
    return action(
        "cron.remove",
        user=validators.validate_username(ctx.service.username),
        job=validators.validate_positive_int(job_id, name="cron job", maximum=10**12),
    )


class CronEnsure(Step):
    """The job on the node as the params say; the undo puts back what was there before (the
    previous version of the job, or nothing for a job this operation created)."""

    name = "cron_job"

    def apply(self, ctx: StepContext) -> None:
        (result,) = ctx.agent([_ensure_action(ctx, ctx.params)])
        ctx.resource("cron_job", ctx.params["job_id"])
        if result.data.get("created"):
            ctx.resource("created", True)
        ctx.own(
            NodeResource.Kind.CRON_JOB,
            cron_row_name(ctx.service.username, ctx.params["job_id"]),
            created=bool(result.data.get("created")),
            detail={"job_id": ctx.params["job_id"]},
        )

    def undo(self, ctx: StepContext) -> None:
        previous = ctx.params.get("previous")
        if previous:
            ctx.agent([_ensure_action(ctx, previous)])
        elif ctx.applied_resources().get("created"):
            ctx.agent([_remove_action(ctx, ctx.params["job_id"])])
            ctx.disown(ctx.made_here(NodeResource.Kind.CRON_JOB))


class CronRemove(Step):
    name = "remove_cron_job"

    def apply(self, ctx: StepContext) -> None:
        name = cron_row_name(ctx.service.username, ctx.params["job_id"])
        rows = ctx.owned(NodeResource.Kind.CRON_JOB, name=name)
        ctx.remove_owned(rows, [_remove_action(ctx, ctx.params["job_id"])])
        if not rows:
            ctx.agent([_remove_action(ctx, ctx.params["job_id"])])

    def undo(self, ctx: StepContext) -> None:
        ctx.agent([_ensure_action(ctx, ctx.params)])
        ctx.own(
            NodeResource.Kind.CRON_JOB,
            cron_row_name(ctx.service.username, ctx.params["job_id"]),
            created=False,
            detail={"job_id": ctx.params["job_id"]},
        )


def cron_row_name(account: str, job_id: object) -> str:
    """A cron job's row name: job ids are the panel's, rows are per node."""
    return f"{account}/{job_id}"


# What the kinds do to the rows when they end (``provisioning.kinds``).


def cron_ensured(service: Service, operation: Operation) -> list[str]:
    CronJob.objects.filter(pk=operation.params.get("job_id"), service=service).update(
        state=CronJob.State.ACTIVE
    )
    return []


def cron_ensure_rolled_back(service: Service, operation: Operation) -> list[str]:
    jobs = CronJob.objects.filter(pk=operation.params.get("job_id"), service=service)
    previous = operation.params.get("previous")
    if not previous:
        jobs.delete()
        return []
    jobs.update(
        schedule=previous["schedule"],
        command=previous["command"],
        output=previous["output"],
        mail_to=previous.get("mail_to") or "",
        enabled=previous["enabled"],
        state=CronJob.State.ACTIVE,
    )
    return []


def cron_removed(service: Service, operation: Operation) -> list[str]:
    CronJob.objects.filter(pk=operation.params.get("job_id"), service=service).delete()
    return []
