"""Reads of the provisioning app: placement, timelines, node usage."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from billing.models import Plan
from provisioning.models import IPAddress, Node, Operation, Service

LIVE = ~Q(state__in=[Service.State.TERMINATED, Service.State.FAILED])


def live_services() -> QuerySet[Service]:
    return Service.objects.filter(LIVE)


def nodes_with_usage() -> QuerySet[Node]:
    return Node.objects.annotate(
        accounts=Count("services", filter=Q(services__in=live_services())),
        disk_used=Sum("services__disk_used_mb", filter=Q(services__in=live_services())),
    )


def node_for_new_service(
    *, plan: Plan, role: str = "web", extra_disk_mb: int = 0, dedicated_ip: bool = False
) -> Node | None:
    """The active node with the role and the most free account capacity, or None. With
    ``dedicated_ip``, only nodes that still have a free dedicated address count."""
    best: Node | None = None
    best_free = 0
    for node in nodes_with_usage().filter(status=Node.Status.ACTIVE).order_by("pk"):
        if not node.has_role(role):
            continue
        free = node.capacity_accounts - (node.accounts or 0)  # type: ignore[attr-defined]
        disk_free = node.capacity_disk_mb - (node.disk_used or 0)  # type: ignore[attr-defined]
        if free > best_free and disk_free >= plan.disk_mb + extra_disk_mb:
            if dedicated_ip and free_dedicated_ip(node=node) is None:
                continue
            best, best_free = node, free
    return best


def dedicated_ip_available() -> bool:
    """Whether some active web node could give a new account a dedicated address now (the
    storefront offers the dedicated IP add-on only then)."""
    for node in Node.objects.filter(status=Node.Status.ACTIVE).order_by("pk"):
        if node.has_role("web") and free_dedicated_ip(node=node) is not None:
            return True
    return False


def free_dedicated_ip(*, node: Node) -> IPAddress | None:
    taken = live_services().filter(ip__isnull=False).values("ip_id")
    return (
        IPAddress.objects.filter(node=node, kind=IPAddress.Kind.DEDICATED)
        .exclude(pk__in=taken)
        .order_by("pk")
        .first()
    )


def next_shared_ip(*, node: Node) -> IPAddress | None:
    """Round-robin: the shared address handed out longest ago (never used first)."""
    return (
        IPAddress.objects.filter(node=node, kind=IPAddress.Kind.SHARED)
        .order_by(F("last_assigned_at").asc(nulls_first=True), "pk")
        .first()
    )


def running_operation(*, service: Service) -> Operation | None:
    return (
        Operation.objects.filter(service=service, state__in=Operation.RUNNING_STATES)
        .order_by("-pk")
        .first()
    )


def domain_holder(*, domain: str) -> Service | None:
    """The live service hosting this domain or one of its parent domains."""
    labels = domain.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    return (
        live_services()
        .filter(domain__in=candidates)
        .select_related("customer")
        .order_by("pk")
        .first()
    )


def operation_timeline(*, operation: Operation) -> list[dict[str, Any]]:
    """Events and step runs of an operation in time order, for the admin and the panel."""
    rows: list[dict[str, Any]] = []
    for event in operation.events.all():
        rows.append({"at": event.at, "type": "event", "event": event})
    for run in operation.step_runs.select_related("node"):
        rows.append({"at": run.started_at, "type": "step", "run": run})
    rows.sort(key=lambda r: (r["at"], 0 if r["type"] == "event" else 1))
    return rows
