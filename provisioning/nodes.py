"""Writes concerning nodes: register (pin the host key), check prerequisites, drain.

``node_check_run`` looks at a node over SSH and stores what it found on ``Node.health``;
it is what ``manage.py node_add`` and ``node_check`` report.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from provisioning import ssh, validators
from provisioning.errors import ProvisioningRefused, StepError
from provisioning.models import IPAddress, Node, NodeGroup

log = logging.getLogger(__name__)
R = TypeVar("R")


def each_active_node(job: Callable[[Node], R], *, what: str) -> dict[str, R | str]:
    """Run ``job`` for every active node with a pinned key, by node name.

    A node that fails (unreachable, a script error) is reported as ``"failed: ..."`` and
    logged; the others still run.
    """
    report: dict[str, R | str] = {}
    for node in Node.objects.filter(status=Node.Status.ACTIVE).exclude(host_key=""):
        try:
            report[node.name] = job(node)
        except StepError as exc:
            log.warning("%s on %s failed: %s", what, node.name, exc)
            report[node.name] = f"failed: {exc}"
    return report


def node_target(node: Node) -> ssh.Target:
    return ssh.Target(
        node_id=node.pk,
        address=node.address,
        port=node.port,
        user=node.ssh_user,
        host_key=node.host_key,
    )


def panel_public_key(*, create: bool = False, web: bool = False) -> str:
    """The panel's public key (generated with ssh-keygen when ``create`` and missing): the
    workers' key, or with ``web`` the web processes' key."""
    path = Path(settings.PROVISIONING_WEB_SSH_KEY if web else settings.PROVISIONING_SSH_KEY)
    if not path.exists():
        if not create:
            raise ProvisioningRefused(f"The panel's SSH key {path} does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "hostwright-panel-web" if web else "hostwright-panel",
                "-f",
                str(path),
            ],
            check=True,
        )
    return Path(f"{path}.pub").read_text().strip()


@transaction.atomic
def node_register(
    *,
    name: str,
    address: str,
    port: int = 22,
    ssh_user: str = "root",
    roles: list[str] | None = None,
    capacity_accounts: int = 500,
    capacity_disk_mb: int = 500_000,
    shared_ips: list[str] | None = None,
    group: str | None = None,
    repin: bool = False,
    actor: User | None = None,
) -> Node:
    """Add a node (or update it) and pin the host key it presents now.

    A node already registered with another key is refused unless ``repin`` is given: a
    changed key means a reinstalled server or someone in between, and a person decides.
    ``group`` names the node's placement group (created with the default policy if new).
    """
    validators.validate_node_name(name)
    validators.validate_host(address)
    validators.validate_positive_int(port, name="port", maximum=65535)
    roles = roles or ["web", "db"]
    unknown = [r for r in roles if r not in Node.ROLES]
    if unknown:
        raise ProvisioningRefused(f"Unknown roles {unknown}: use {', '.join(Node.ROLES)}.")
    try:
        key = ssh.fetch_host_key(address, port)
    except StepError as exc:
        raise ProvisioningRefused(f"Cannot reach {address}:{port}: {exc}") from None
    key_text = ssh.host_key_text(key)
    node = Node.objects.select_for_update().filter(name=name).first()
    if node is not None and node.host_key and node.host_key != key_text and not repin:
        pinned = ssh.fingerprint(ssh.parse_host_key(node.host_key))
        raise ProvisioningRefused(
            f"{name} now presents host key {ssh.fingerprint(key)}, but {pinned} is pinned. "
            "Check the server, then add it again with --repin."
        )
    if node is None:
        node = Node(name=name)
    node.address, node.port, node.ssh_user, node.roles = address, port, ssh_user, roles
    node.capacity_accounts, node.capacity_disk_mb = capacity_accounts, capacity_disk_mb
    node.host_key = key_text
    if group is not None:
        validators.validate_node_name(group)
        node.group, _ = NodeGroup.objects.get_or_create(name=group)
    node.save()
    for ip in shared_ips or []:
        IPAddress.objects.get_or_create(
            address=ip, defaults={"node": node, "kind": IPAddress.Kind.SHARED}
        )
    audit_record(
        action="provisioning.node.registered",
        actor=actor,
        target=node,
        detail={"address": address, "port": port, "fingerprint": ssh.fingerprint(key)},
    )
    return node


def node_check_run(*, node_id: int) -> dict[str, Any]:
    """Ask a node's agent what it lacks, its free disk and load. Stores and returns the report."""
    node = Node.objects.get(pk=node_id)
    report: dict[str, Any] = {"ok": False, "missing": [], "error": ""}
    try:
        result = ssh.call(
            node_target(node),
            [ssh.action("node.check")],
            key_path=settings.PROVISIONING_SSH_KEY,
            timeout=30,
        )
    except StepError as exc:
        report["error"] = str(exc)
    else:
        failure = result.failure()
        if failure is not None:
            report["error"] = str(failure[1].get("message", "the node check failed"))
        else:
            data = result.results[0].data
            report["missing"] = list(data.get("missing", []))
            report["disk_free_mb"] = data.get("free_mb")
            report["load"] = str((data.get("load") or [""])[0])
            report["ok"] = not report["missing"]
    report["fingerprint"] = (
        ssh.fingerprint(ssh.parse_host_key(node.host_key)) if node.host_key else ""
    )
    node.health = report
    node.health_checked_at = timezone.now()
    node.save(update_fields=["health", "health_checked_at"])
    return report


def node_repin(*, node: Node, actor: User | None = None) -> Node:
    """Pin the host key a node presents now (a reinstalled server), after a person checked it.

    Until then the engine refuses the node: its work waits, as for a node that does not
    answer. The new key is fetched first (outside any transaction: the node may be slow),
    then pinned on the locked row with the old and new fingerprints in the audit log; the
    node's breaker is closed so its waiting work is let through at its next try.
    """
    try:
        key = ssh.fetch_host_key(node.address, node.port)
    except StepError as exc:
        raise ProvisioningRefused(f"Cannot reach {node.address}:{node.port}: {exc}") from None
    key_text = ssh.host_key_text(key)
    with transaction.atomic():
        node = Node.objects.select_for_update().get(pk=node.pk)
        before = ssh.fingerprint(ssh.parse_host_key(node.host_key)) if node.host_key else ""
        node.host_key = key_text
        health = dict(node.health or {})
        health.pop("breaker", None)
        node.health = health
        node.save(update_fields=["host_key", "health"])
        audit_record(
            action="provisioning.node.repinned",
            actor=actor,
            target=node,
            detail={"from": before, "to": ssh.fingerprint(key)},
        )
    # Connections made with the old key are of no use any more.
    ssh.pool.forget(node.pk)
    return node


@transaction.atomic
def node_set_status(*, node: Node, status: str, actor: User | None = None) -> Node:
    """Drain (no new accounts), take offline, or reactivate a node."""
    if status not in Node.Status.values:
        raise ProvisioningRefused(f"Unknown node status {status!r}.")
    node = Node.objects.select_for_update().get(pk=node.pk)
    before = node.status
    node.status = status
    node.save(update_fields=["status"])
    audit_record(
        action="provisioning.node.status",
        actor=actor,
        target=node,
        detail={"from": before, "to": status},
    )
    return node
