"""Drift detection: does each node hold what the database says it holds?

A periodic job asks each active node's agent for its inventory (Linux users, PHP-FPM pools,
nginx server blocks, databases) and compares it with what the database says its live
accounts hold. Every
difference becomes an open ``DriftFinding``; one that a later check no longer sees is
resolved. A finding that an account is missing a piece can be repaired: a ``repair``
operation runs the account's create steps again, which converge (each looks before it acts)
and are never undone, so a failed repair cannot remove a working account.

Unexpected resources (tagged as Hostwright's on the node but unknown to the database) are
reported, never deleted automatically: a person decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from provisioning import nodes, ssh, validators
from provisioning.errors import ProvisioningRefused, StepError
from provisioning.models import DriftFinding, Node, Operation, Service
from provisioning.steps.base import Step, StepContext

KINDS = ("user", "pool", "site", "database")


@dataclass(frozen=True)
class Difference:
    kind: str
    problem: str
    name: str


def expected_names(node: Node) -> tuple[dict[str, set[str]], dict[tuple[str, str], Service]]:
    """What the database says the node holds, and which service each name belongs to."""
    expected: dict[str, set[str]] = {kind: set() for kind in KINDS}
    owner: dict[tuple[str, str], Service] = {}
    live = Service.objects.filter(
        node=node, state__in=[Service.State.ACTIVE, Service.State.SUSPENDED]
    ).select_related("plan")
    for service in live:
        # Names come from the database but are validated again before they reach the node.
        user = validators.validate_username(service.username)
        names = {"user": user, "pool": user, "site": user}
        if service.plan.databases >= 1:
            names["database"] = validators.validate_db_name(f"{user}_main")
        for kind, name in names.items():
            expected[kind].add(name)
            owner[(kind, name)] = service
    return expected, owner


def node_inventory(node: Node) -> dict[str, set[str]]:
    """What the node holds of each kind, from its agent's inventory."""
    result = ssh.call(
        nodes.node_target(node),
        [ssh.action("inventory.list", kinds=list(KINDS))],
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
    )
    failure = result.failure()
    if failure is not None:
        raise StepError(f"the drift check failed on {node.name}: {failure[1].get('message')}")
    found = result.results[0].data.get("found") or {}
    actual = {kind: set(found.get(kind) or []) for kind in KINDS}
    # Only each account's main database is the panel's to compare; the others are the
    # customer's own (see provisioning.resources.databases).
    actual["database"] = {n for n in actual["database"] if n.endswith("_main")}
    return actual


def node_differences(node: Node, expected: dict[str, set[str]]) -> list[Difference]:
    actual = node_inventory(node)
    found = []
    for kind in KINDS:
        found += [Difference(kind, "missing", n) for n in sorted(expected[kind] - actual[kind])]
        found += [Difference(kind, "unexpected", n) for n in sorted(actual[kind] - expected[kind])]
    return found


def drift_check_node(*, node_id: int) -> dict[str, int]:
    """Compare one node with the database and record what differs. Returns counts."""
    node = Node.objects.get(pk=node_id)
    expected, owner = expected_names(node)
    found = node_differences(node, expected)
    now = timezone.now()
    opened = 0
    seen: set[tuple[str, str, str]] = set()
    with transaction.atomic():
        open_findings = {
            (f.kind, f.name, f.problem): f
            for f in DriftFinding.objects.select_for_update().filter(
                node=node, resolved_at__isnull=True
            )
        }
        for diff in found:
            key = (diff.kind, diff.name, diff.problem)
            seen.add(key)
            if key in open_findings:
                finding = open_findings[key]
                finding.last_seen_at = now
                finding.save(update_fields=["last_seen_at"])
                continue
            service = owner.get((diff.kind, diff.name))
            DriftFinding.objects.create(
                node=node,
                service=service,
                kind=diff.kind,
                name=diff.name,
                problem=diff.problem,
                detail=(
                    f"{service.domain} should have it" if service
                    else "tagged as Hostwright's on the node, but no live account owns it"
                ),
                detected_at=now,
                last_seen_at=now,
            )  # fmt: skip
            opened += 1
        resolved = 0
        for key, finding in open_findings.items():
            if key not in seen:
                finding.resolved_at = now
                finding.save(update_fields=["resolved_at"])
                resolved += 1
    return {"found": len(found), "opened": opened, "resolved": resolved}


def drift_check_all() -> dict[str, dict[str, int] | str]:
    """Check every active node; a node that cannot be reached is reported, not fatal."""
    return nodes.each_active_node(
        lambda node: drift_check_node(node_id=node.pk), what="the drift check"
    )


def converging(step: type[Step]) -> type[Step]:
    """The step as a repair runs it: apply converges, undo never removes anything."""

    def undo(self: Step, ctx: StepContext) -> None:
        return None

    return type(f"Repair{step.__name__}", (step,), {"name": f"repair_{step.name}", "undo": undo})


REPAIR = "repair"


def drift_repair(*, finding: DriftFinding, actor: User | None = None) -> Operation:
    """Queue a repair of the account a "missing" finding belongs to."""
    from provisioning.services import operation_start

    if finding.problem != DriftFinding.Problem.MISSING or finding.service is None:
        raise ProvisioningRefused(
            "Only a missing piece of a live account can be repaired; unexpected resources "
            "need a person to decide.",
            code="not_repairable",
        )
    if finding.service.state != Service.State.ACTIVE:
        raise ProvisioningRefused(
            f"{finding.service.domain} is {finding.service.state}; repair only active accounts.",
            code="state",
        )
    with transaction.atomic():
        operation = operation_start(service=finding.service, kind=REPAIR, actor=actor)
        DriftFinding.objects.filter(pk=finding.pk).update(repair_operation=operation)
    return operation
