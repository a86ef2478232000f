"""Drift detection: does each node hold what the database says it holds?

A periodic job sends each active node the names it should have (Linux users, PHP-FPM pools,
nginx server blocks, databases of its live accounts) and the node answers with the
differences only, so the answer stays small however many accounts the node carries. Every
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
from provisioning.steps.base import OperationKind, Step, StepContext, register_kind
from provisioning.steps.hosting import (
    PHP,
    AccountDatabase,
    AccountLimits,
    LinuxUser,
    PhpPool,
    SiteConfig,
    ValidateAccount,
)

KINDS = ("user", "pool", "site", "database")

# Lists what the node holds of one kind and prints only the differences from the expected
# names it is given ("<kind> missing <name>" / "<kind> unexpected <name>").
ssh.register_shell_functions(
    r"""
hw_drift() {
  local kind=$1 expected=$2 actual=""
  case $kind in
    user) actual=$(getent passwd | awk -F: 'index($5, "hostwright service ") == 1 {print $1}') ;;
    pool) actual=$(ls -1 /etc/php/"""
    + PHP
    + r"""/fpm/pool.d 2>/dev/null | sed -n 's/^hw-\(.*\)\.conf$/\1/p') ;;
    site) actual=$(ls -1 /etc/nginx/hostwright/sites 2>/dev/null | sed -n 's/\.conf$//p') ;;
    database) actual=$(mysql -N -B -e 'SHOW DATABASES' 2>/dev/null | grep '_main$') ;;
    *) echo "unknown drift kind $kind" >&2; return 64 ;;
  esac
  comm -3 <(printf '%s\n' "$expected" | sed '/^$/d' | sort -u) \
          <(printf '%s\n' "$actual" | sed '/^$/d' | sort -u) |
  while IFS= read -r line; do
    case $line in
      $'\t'*) printf '%s unexpected %s\n' "$kind" "${line#$'\t'}" ;;
      *) printf '%s missing %s\n' "$kind" "$line" ;;
    esac
  done
}
"""
)


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


def node_differences(node: Node, expected: dict[str, set[str]]) -> list[Difference]:
    target = nodes.node_target(node)
    commands = [ssh.cmd("hw_drift", kind, "\n".join(sorted(expected[kind]))) for kind in KINDS]
    result = ssh.run(
        target,
        commands,
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
    )
    if not result.ok:
        raise StepError(f"the drift check failed on {node.name}: {result.stderr.strip()[-300:]}")
    found = []
    for line in result.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] in KINDS and parts[1] in ("missing", "unexpected"):
            found.append(Difference(kind=parts[0], problem=parts[1], name=parts[2]))
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
register_kind(
    OperationKind(
        name=REPAIR,
        steps=[
            ValidateAccount,
            *(converging(s) for s in (LinuxUser, AccountLimits, PhpPool, AccountDatabase,
                                       SiteConfig)),
        ],
    )
)  # fmt: skip


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
