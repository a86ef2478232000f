"""Writes of the provisioning engine: what billing, the panel, the API and staff call.

Every function validates before anything reaches a node, locks the rows it changes,
writes an event or audit row, and queues Celery work only after the transaction commits.
Refusals raise ``ProvisioningRefused`` (a ``ValidationError``) with a message to show.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.models import AuditLog, Customer, User
from accounts.services import audit_record
from billing.models import Plan
from provisioning import guards, selectors, validators, workflow
from provisioning.errors import PermanentStepError, ProvisioningRefused
from provisioning.models import (
    IPAddress,
    Node,
    Operation,
    OperationEvent,
    Service,
    StepRun,
    SuspensionHold,
)
from provisioning.steps.base import get_kind

logger = logging.getLogger(__name__)


def _label(actor: User | None) -> str:
    return actor.email if actor is not None else "system"


def _refuse_if_busy(service: Service, kind: str = "") -> None:
    running = selectors.running_operation(service=service)
    if running is not None and running.kind == kind:
        # The same request again (a reload, a double click, a script retrying): never twice.
        raise ProvisioningRefused(
            f"This is already under way on {service.domain} ({kind.replace('_', ' ')} "
            f"#{running.pk}, {running.get_state_display().lower()}): it was not started a "
            "second time. Follow it on the service page.",
            code="busy",
        )
    if running is not None:
        raise ProvisioningRefused(
            f"Another operation is running on {service.domain} ({running.kind} "
            f"#{running.pk}, {running.get_state_display().lower()}): wait until it has finished.",
            code="busy",
        )


def _refuse_by_state(service: Service, kind: str, actor: User | None) -> None:
    refusal = guards.operation_refusal(service=service, kind=kind, actor=actor)
    if refusal:
        raise ProvisioningRefused(refusal, code="state")


def _lock_service(service: Service) -> Service:
    """The service's row, locked; its plan and customer are read with it but not locked
    (``of=("self",)``): a plain ``FOR UPDATE`` on the join locked them too, so every operation
    start on a plan or a customer waited for every other, and two orders of one customer
    deadlocked with a worker finishing a third (seen filling a node with accounts)."""
    return (
        Service.objects.select_for_update(of=("self",))
        .select_related("plan", "customer")
        .get(pk=service.pk)
    )


@transaction.atomic
def operation_start(
    *,
    service: Service,
    kind: str,
    params: dict[str, Any] | None = None,
    actor: User | None = None,
) -> Operation:
    """Create an operation of a registered kind on a service and queue its chain after commit.

    Refused when another operation is running on the service: one at a time, also enforced
    by a unique constraint so two racing requests cannot both start one. The same kind asked
    again while it runs (a reloaded form, a retrying script) is told so in those words. Then
    refused when the service's state does not allow the kind for this actor: the one table in
    ``provisioning.guards``, checked on the locked row.
    """
    try:
        get_kind(kind)
    except PermanentStepError as exc:
        raise ProvisioningRefused(str(exc), code="kind") from None
    service = _lock_service(service)
    _refuse_if_busy(service, kind)
    _refuse_by_state(service, kind, actor)
    try:
        with transaction.atomic():
            operation = Operation.objects.create(
                service=service, kind=kind, params=params or {}, actor=actor
            )
    except IntegrityError:
        raise ProvisioningRefused(
            f"Another operation is running on {service.domain}: wait until it has finished.",
            code="busy",
        ) from None
    OperationEvent.objects.create(
        operation=operation,
        from_state="",
        to_state=operation.state,
        actor=actor,
        actor_label=_label(actor),
        detail=f"{kind} requested",
    )
    audit_record(
        action=f"provisioning.operation.{kind}",
        actor=actor,
        target=operation,
        customer=service.customer,
        detail={"service": service.pk, "domain": service.domain},
    )
    operation_id = operation.pk
    transaction.on_commit(lambda: workflow.queue_chain(operation_id, 0, kind=kind))
    return operation


def _username_for(domain: str, node: Node) -> str:
    prefix = settings.PROVISIONING_USER_PREFIX
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
        raise ProvisioningRefused("PROVISIONING_USER_PREFIX must be 1-8 lower-case letters/digits")
    stem = re.sub(r"[^a-z0-9]", "", domain.split(".")[0])[:8]
    alphabet = string.ascii_lowercase + string.digits
    for _ in range(20):
        suffix = "".join(secrets.choice(alphabet) for _ in range(4))
        name = validators.validate_username(f"{prefix}{stem}{suffix}")
        if not selectors.live_services().filter(node=node, username=name).exists():
            return name
    raise ProvisioningRefused("Could not find a free account name; try again.")


def service_order(
    *,
    customer: Customer,
    plan: Plan,
    domain: str,
    actor: User | None = None,
    dedicated_ip: bool = False,
    extra_disk_mb: int = 0,
) -> Service:
    """Create a hosting account (see ``service_order_started``); the new service."""
    service, _operation = service_order_started(
        customer=customer,
        plan=plan,
        domain=domain,
        actor=actor,
        dedicated_ip=dedicated_ip,
        extra_disk_mb=extra_disk_mb,
    )
    return service


@transaction.atomic
def service_order_started(
    *,
    customer: Customer,
    plan: Plan,
    domain: str,
    actor: User | None = None,
    dedicated_ip: bool = False,
    extra_disk_mb: int = 0,
) -> tuple[Service, Operation]:
    """Create a hosting account: validate the domain, place it on a node, queue `create`;
    the new service and its queued `create` operation.

    The domain must be a valid (IDNA) name that no other live service hosts, nor a parent
    domain of it hosted by another customer. Placement picks the active web node with the
    most free capacity; plans with a dedicated IP, and orders with the dedicated IP add-on
    (``dedicated_ip``), get a free dedicated address of that node (its site listens on it),
    others a shared IP round-robin. ``extra_disk_mb`` (the extra storage add-on) is added to
    the plan's disk limit.
    """
    if extra_disk_mb < 0:
        raise ProvisioningRefused("Extra disk cannot be negative.", code="disk")
    dedicated_ip = dedicated_ip or plan.dedicated_ip
    name = validators.validate_domain(domain)
    if not plan.is_active:
        raise ProvisioningRefused(f"The plan {plan} is not available.", code="plan")
    holder = selectors.domain_holder(domain=name)
    if holder is not None:
        if holder.customer_id == customer.pk and holder.domain == name:
            raise ProvisioningRefused(f"You already host {name}.", code="domain_taken")
        if holder.customer_id != customer.pk:
            raise ProvisioningRefused(
                f"{name} cannot be added: it is already hosted by another customer.",
                code="domain_taken",
            )
    # Lock the candidate nodes so two orders do not both take the last free slot.
    list(Node.objects.select_for_update().filter(status=Node.Status.ACTIVE))
    node = selectors.node_for_new_service(
        plan=plan, extra_disk_mb=extra_disk_mb, dedicated_ip=dedicated_ip
    )
    if node is None and dedicated_ip:
        raise ProvisioningRefused(
            "No dedicated IP address is free on any server right now; staff have to add one.",
            code="no_ip",
        )
    if node is None:
        raise ProvisioningRefused(
            "No hosting server has room for a new account right now; staff have to add one.",
            code="no_capacity",
        )
    ip: IPAddress | None
    if dedicated_ip:
        ip = selectors.free_dedicated_ip(node=node)
        if ip is None:
            raise ProvisioningRefused(
                f"No dedicated IP address is free on {node.name}; staff have to add one.",
                code="no_ip",
            )
    else:
        ip = selectors.next_shared_ip(node=node)
        if ip is not None:
            ip.last_assigned_at = timezone.now()
            ip.save(update_fields=["last_assigned_at"])
    username = _username_for(name, node)
    try:
        # A race with another order of the same domain ends here; this function's savepoint
        # (or, at the top level, its transaction) undoes the order whole.
        service = Service.objects.create(
            customer=customer,
            plan=plan,
            node=node,
            ip=ip,
            username=username,
            domain=name,
            extra_disk_mb=extra_disk_mb,
        )
    except IntegrityError:
        raise ProvisioningRefused(f"{name} is already hosted.", code="domain_taken") from None
    # The new service has no operation yet and nobody else sees it before the commit: no row
    # to lock and nothing running to refuse for (what ``operation_start`` checks), only the
    # state table.
    kind = Operation.Kind.CREATE
    _refuse_by_state(service, kind, actor)
    operation = Operation.objects.create(service=service, kind=kind, actor=actor)
    OperationEvent.objects.create(
        operation=operation,
        from_state="",
        to_state=operation.state,
        actor=actor,
        actor_label=_label(actor),
        detail=f"{kind} requested",
    )
    label = _label(actor)
    AuditLog.objects.bulk_create(
        [
            AuditLog(
                action="provisioning.service.ordered",
                actor=actor,
                actor_label=label,
                customer=customer,
                object_type=Service._meta.label_lower,
                object_id=str(service.pk),
                detail={"domain": name, "plan": plan.pk, "node": node.name},
            ),
            AuditLog(
                action=f"provisioning.operation.{kind}",
                actor=actor,
                actor_label=label,
                customer=customer,
                object_type=Operation._meta.label_lower,
                object_id=str(operation.pk),
                detail={"service": service.pk, "domain": name},
            ),
        ]
    )
    operation_id = operation.pk
    transaction.on_commit(lambda: workflow.queue_chain(operation_id, 0, kind=kind))
    return service, operation


def _holds_sync(service: Service) -> list[str]:
    """Copy the open holds' reasons onto the service (lists and the API read the copy)."""
    reasons = list(
        SuspensionHold.objects.filter(service=service, lifted_at__isnull=True)
        .order_by("placed_at", "id")
        .values_list("reason", flat=True)
    )
    if reasons != list(service.suspension_reasons or []):
        service.suspension_reasons = reasons
        service.save(update_fields=["suspension_reasons", "updated_at"])
    return reasons


def _holds_enforce(service: Service, *, actor: User | None) -> Operation | None:
    """Bring a locked service to what its holds ask: suspended while any hold is open, active
    once none is. When another operation runs (a nightly backup, a plan change), nothing
    starts now: the operation's end calls ``service_holds_enforce`` and the change runs then.
    """
    if selectors.running_operation(service=service) is not None:
        return None
    open_holds = list(
        SuspensionHold.objects.filter(service=service, lifted_at__isnull=True).order_by(
            "placed_at", "id"
        )
    )
    if open_holds and service.state == Service.State.ACTIVE:
        return operation_start(
            service=service,
            kind=Operation.Kind.SUSPEND,
            params={"reason": open_holds[0].reason},
            actor=actor,
        )
    if not open_holds and service.state == Service.State.SUSPENDED:
        return operation_start(service=service, kind=Operation.Kind.UNSUSPEND, actor=actor)
    return None


@transaction.atomic
def service_suspend(
    *, service: Service, reason: str, actor: User | None = None, note: str = ""
) -> Operation | None:
    """Place a suspension hold; suspend the account on its node if it is active.

    Returns the suspend operation, or None when none was started now: the service is already
    suspended (or being suspended) for another hold, it is still being created, or another
    operation runs; in the last two cases the suspension starts when that operation ends.
    Placing a hold that is already open changes nothing.
    """
    reason = validators.validate_reason(reason)
    service = _lock_service(service)
    if service.state not in (Service.State.ACTIVE, Service.State.SUSPENDED, Service.State.PENDING):
        raise ProvisioningRefused(
            f"{service.domain} is {service.get_state_display().lower()}; only live accounts "
            "can be suspended.",
            code="state",
        )
    hold, placed = SuspensionHold.objects.get_or_create(
        service=service,
        reason=reason,
        lifted_at=None,
        defaults={"note": note[:300], "placed_by": actor, "placed_by_label": _label(actor)},
    )
    reasons = _holds_sync(service)
    if placed:
        audit_record(
            action="provisioning.service.hold_placed",
            actor=actor,
            target=service,
            customer=service.customer,
            detail={"reason": reason, "hold": hold.pk, "reasons": reasons},
        )
    return _holds_enforce(service, actor=actor)


@transaction.atomic
def service_unsuspend(
    *, service: Service, reason: str, actor: User | None = None
) -> Operation | None:
    """Lift the open hold of one reason; unsuspend on the node once no hold is left.

    Returns the unsuspend operation, or None when none was started now: no such hold was
    open, another hold still keeps the service suspended, or another operation runs (then the
    unsuspension starts when that operation ends: it is queued, never refused).
    """
    reason = validators.validate_reason(reason)
    service = _lock_service(service)
    hold = (
        SuspensionHold.objects.select_for_update()
        .filter(service=service, reason=reason, lifted_at__isnull=True)
        .first()
    )
    if hold is None:
        return None
    hold.lifted_at = timezone.now()
    hold.lifted_by = actor
    hold.lifted_by_label = _label(actor)
    hold.save(update_fields=["lifted_at", "lifted_by", "lifted_by_label"])
    remaining = _holds_sync(service)
    audit_record(
        action="provisioning.service.hold_lifted",
        actor=actor,
        target=service,
        customer=service.customer,
        detail={"reason": reason, "hold": hold.pk, "remaining": remaining},
    )
    return _holds_enforce(service, actor=actor)


@transaction.atomic
def service_holds_enforce(
    *, service_id: int, after_operation_id: int | None = None
) -> Operation | None:
    """Start the suspension or unsuspension that waited for an operation to end.

    Called after every operation reaches a final state. When the operation that ended was
    itself a suspend or unsuspend that failed, it is not started again at once (that would
    loop): the daily billing run and staff take it from there.
    """
    service = Service.objects.select_for_update().filter(pk=service_id).first()
    if service is None:
        return None
    if after_operation_id is not None:
        ended = Operation.objects.filter(pk=after_operation_id).first()
        if (
            ended is not None
            and ended.kind in (Operation.Kind.SUSPEND, Operation.Kind.UNSUSPEND)
            and ended.state != Operation.State.COMPLETED
        ):
            return None
    return _holds_enforce(service, actor=None)


def service_holds_enforce_quietly(*, service_id: int, after_operation_id: int | None) -> None:
    """``service_holds_enforce`` for on-commit hooks: a refusal or error is logged, and the
    daily catch-up (``services_holds_catch_up``) tries again."""
    try:
        service_holds_enforce(service_id=service_id, after_operation_id=after_operation_id)
    except Exception:
        logger.exception("holds of service %s not enforced; the daily run retries", service_id)


def services_holds_catch_up() -> int:
    """Services whose state disagrees with their holds and that nothing is changing: an
    active one with an open hold (its suspension failed), a suspended one without (its
    unsuspension failed). Start the operation each needs; returns how many started."""
    open_hold = SuspensionHold.objects.filter(service=OuterRef("pk"), lifted_at__isnull=True)
    running = Operation.objects.filter(service=OuterRef("pk"), state__in=Operation.RUNNING_STATES)
    ids = list(
        Service.objects.alias(has_hold=Exists(open_hold))
        .filter(
            Q(state=Service.State.ACTIVE, has_hold=True)
            | Q(state=Service.State.SUSPENDED, has_hold=False)
        )
        .exclude(Exists(running))
        .values_list("pk", flat=True)
    )
    started = 0
    for service_id in ids:
        try:
            started += service_holds_enforce(service_id=service_id) is not None
        except ProvisioningRefused as exc:
            logger.warning("holds of service %s not enforced: %s", service_id, exc)
    return started


@transaction.atomic
def service_terminate(*, service: Service, actor: User | None = None) -> Operation:
    """Remove the account from its node: site, pool, database, user, limits."""
    service = _lock_service(service)
    if service.state not in (
        Service.State.ACTIVE,
        Service.State.SUSPENDED,
        Service.State.FAILED,
    ):
        raise ProvisioningRefused(
            f"{service.domain} is {service.get_state_display().lower()} and cannot be terminated.",
            code="state",
        )
    _refuse_if_busy(service)
    return operation_start(service=service, kind=Operation.Kind.TERMINATE, actor=actor)


@transaction.atomic
def service_change_plan(*, service: Service, plan: Plan, actor: User | None = None) -> Operation:
    """Apply another plan's limits (PHP workers, memory, CPU, processes) on the node."""
    service = _lock_service(service)
    if service.state != Service.State.ACTIVE:
        raise ProvisioningRefused(
            f"{service.domain} is {service.get_state_display().lower()}: plans change on active "
            "accounts only.",
            code="state",
        )
    if plan.pk == service.plan_id:
        raise ProvisioningRefused(f"{service.domain} is already on {plan}.", code="same_plan")
    if plan.dedicated_ip != service.plan.dedicated_ip:
        raise ProvisioningRefused(
            "Moving between a shared and a dedicated IP address needs staff to move the account.",
            code="ip_change",
        )
    _refuse_if_busy(service)
    return operation_start(
        service=service,
        kind=Operation.Kind.CHANGE_PLAN,
        params={"plan_id": plan.pk, "previous_plan_id": service.plan_id},
        actor=actor,
    )


@transaction.atomic
def service_move(
    *,
    service: Service,
    node: Node,
    actor: User | None = None,
    failpoint: dict[str, str] | None = None,
) -> Operation:
    """Move an active account to another node (staff): files, databases, mail, certificate,
    limits, backups and SFTP access copied, DNS and the service switched, the old node
    cleaned once the new one serves the site (``provisioning.steps.move``).

    The new node must be active, have the web role, room for one more account, and no live
    account of the same Linux name. The site keeps its kind of address: a dedicated one
    gets a free dedicated address of the new node, a shared one the new node's next shared
    address. ``failpoint`` makes a step fail on purpose (fault tests; only with
    PROVISIONING_FAILPOINTS on).
    """
    service = _lock_service(service)
    source = service.node
    if source is None:
        raise ProvisioningRefused(f"{service.domain} is on no node yet.", code="state")
    target = Node.objects.select_for_update().get(pk=node.pk)
    if target.pk == source.pk:
        raise ProvisioningRefused(f"{service.domain} is on {target.name} already.", code="node")
    if target.status != Node.Status.ACTIVE or not target.has_role("web"):
        raise ProvisioningRefused(
            f"{target.name} takes no accounts (it must be active and have the web role).",
            code="node",
        )
    if selectors.live_services().filter(node=target).count() >= target.capacity_accounts:
        raise ProvisioningRefused(f"{target.name} has no room for another account.", code="node")
    if selectors.live_services().filter(node=target, username=service.username).exists():
        raise ProvisioningRefused(
            f"{target.name} already has an account named {service.username}.", code="node"
        )
    _refuse_if_busy(service, "move")
    dedicated = service.ip is not None and service.ip.kind == IPAddress.Kind.DEDICATED
    ip = selectors.free_dedicated_ip(node=target) if dedicated else None
    if dedicated and ip is None:
        raise ProvisioningRefused(
            f"{target.name} has no free dedicated IP address for {service.domain}.", code="no_ip"
        )
    if not dedicated:
        ip = selectors.next_shared_ip(node=target)
        if ip is not None:
            ip.last_assigned_at = timezone.now()
            ip.save(update_fields=["last_assigned_at"])
    params: dict[str, Any] = {
        "source_node_id": source.pk,
        "source_ip_id": service.ip_id,
        "target_node_id": target.pk,
        "target_ip_id": ip.pk if ip is not None else None,
    }
    if failpoint:
        params["failpoint"] = dict(failpoint)
    return operation_start(service=service, kind="move", params=params, actor=actor)


@transaction.atomic
def operation_retry(*, operation: Operation, actor: User | None = None) -> Operation:
    """Run a failed or rolled-back operation again from its first step."""
    service = _lock_service(operation.service)
    operation = Operation.objects.select_for_update().get(pk=operation.pk)
    if operation.state not in (Operation.State.FAILED, Operation.State.ROLLED_BACK):
        raise ProvisioningRefused(
            f"Only failed or rolled-back operations can be retried; this one is "
            f"{operation.get_state_display().lower()}.",
            code="state",
        )
    _refuse_if_busy(service)
    _refuse_by_state(service, operation.kind, actor)
    latest = Operation.objects.filter(service=service).order_by("-pk").first()
    if latest is not None and latest.pk != operation.pk:
        raise ProvisioningRefused(
            "A later operation ran on this service since; start a new one instead.", code="stale"
        )
    if operation.kind == Operation.Kind.CREATE and service.state == Service.State.FAILED:
        service.retry()
        try:
            with transaction.atomic():
                service.save(update_fields=["state", "updated_at"])
        except IntegrityError:
            raise ProvisioningRefused(
                f"{service.domain} is now hosted by another account.", code="domain_taken"
            ) from None
    workflow.record_transition(operation, "requeue", actor=actor, detail="retry requested")
    audit_record(
        action="provisioning.operation.retried",
        actor=actor,
        target=operation,
        customer=service.customer,
    )
    operation_id = operation.pk
    transaction.on_commit(lambda: workflow.queue_chain(operation_id, 0))
    return operation


@transaction.atomic
def operation_rollback(*, operation: Operation, actor: User | None = None) -> Operation:
    """Undo what a failed (or stuck) operation did on the node, in reverse order."""
    operation = Operation.objects.select_for_update().get(pk=operation.pk)
    if operation.state not in (Operation.State.FAILED, *workflow.APPLY_STATES):
        raise ProvisioningRefused(
            f"This operation is {operation.get_state_display().lower()} and cannot be rolled "
            "back; start the opposite operation instead.",
            code="state",
        )
    running = operation.step_runs.filter(status=StepRun.Status.RUNNING).first()
    if running is not None:
        stale_before = timezone.now() - timedelta(seconds=settings.PROVISIONING_STALE_AFTER)
        if running.started_at > stale_before:
            # Its undo would race the step still acting on the node.
            raise ProvisioningRefused(
                f"Step {running.step} is still running; roll back once it has finished "
                "(or, if its worker was lost, once the sweeper has marked it stopped).",
                code="busy",
            )
        running.status = StepRun.Status.FAILED
        running.error = "the worker stopped during this step; the outcome is unknown"
        running.finished_at = timezone.now()
        running.save(update_fields=["status", "error", "finished_at"])
    reason = operation.reason or f"Rolled back by {_label(actor)}."
    workflow.begin_rollback(operation, reason=reason, actor=actor)
    audit_record(
        action="provisioning.operation.rollback_requested",
        actor=actor,
        target=operation,
        customer=operation.service.customer,
    )
    return operation
