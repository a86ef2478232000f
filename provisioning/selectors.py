"""Reads of the provisioning app: placement, timelines, node usage."""

from __future__ import annotations

import secrets
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from billing.models import Plan
from provisioning.breaker import breaker_pauses
from provisioning.models import IPAddress, Node, NodeGroup, Operation, Service

LIVE = ~Q(state__in=[Service.State.TERMINATED, Service.State.FAILED])


def live_services() -> QuerySet[Service]:
    return Service.objects.filter(LIVE)


def nodes_with_usage() -> QuerySet[Node]:
    return Node.objects.annotate(
        accounts=Count("services", filter=Q(services__in=live_services())),
        disk_used=Sum("services__disk_used_mb", filter=Q(services__in=live_services())),
    )


def placement_candidates(
    *, plan: Plan, role: str = "web", extra_disk_mb: int = 0, dedicated_ip: bool = False
) -> list[tuple[str, list[Node]]]:
    """The nodes that may take a new account of this plan, as (policy, nodes) per group.

    A plan pinned to groups may use only their nodes. Any other plan may use the groups that
    are not reserved, in name order, and then the nodes in no group (most free capacity).
    A node counts when it is active, has the role, has account room left and disk for the
    plan (and its extra disk); draining and offline nodes take no new accounts, nor does a
    node whose circuit breaker is open (it stopped answering: its own work waits). With
    ``dedicated_ip``, only nodes that still have a free dedicated address count.
    """
    pinned = list(NodeGroup.objects.filter(plans=plan).order_by("name"))
    groups = pinned or list(NodeGroup.objects.filter(reserved=False).order_by("name"))
    disk = plan.disk_mb + extra_disk_mb
    usable = [
        node
        for node in nodes_with_usage().filter(status=Node.Status.ACTIVE).order_by("pk")
        if node.has_role(role)
        and not breaker_pauses(node)
        and node.capacity_accounts - (node.accounts or 0) > 0  # type: ignore[attr-defined]
        and node.capacity_disk_mb - (node.disk_used or 0) >= disk  # type: ignore[attr-defined]
        and (not dedicated_ip or free_dedicated_ip(node=node) is not None)
    ]
    candidates = [(g.policy, [n for n in usable if n.group_id == g.pk]) for g in groups]
    if not pinned:
        candidates.append((NodeGroup.Policy.MOST_FREE, [n for n in usable if n.group_id is None]))
    return [(policy, found) for policy, found in candidates if found]


def pick_node(policy: str, nodes: list[Node]) -> Node:
    """One node of a non-empty list by a group's placement policy (ties: the oldest node)."""
    if policy == NodeGroup.Policy.RANDOM:
        return secrets.choice(nodes)
    if policy == NodeGroup.Policy.FEWEST_ACCOUNTS:
        return min(nodes, key=lambda n: (n.accounts or 0, n.pk))  # type: ignore[attr-defined]
    return max(
        nodes,
        key=lambda n: (n.capacity_accounts - (n.accounts or 0), -n.pk),  # type: ignore[attr-defined]
    )


def node_for_new_service(
    *, plan: Plan, role: str = "web", extra_disk_mb: int = 0, dedicated_ip: bool = False
) -> Node | None:
    """Where a new account of this plan goes: the first group with room, by its policy."""
    for policy, nodes in placement_candidates(
        plan=plan, role=role, extra_disk_mb=extra_disk_mb, dedicated_ip=dedicated_ip
    ):
        return pick_node(policy, nodes)
    return None


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
