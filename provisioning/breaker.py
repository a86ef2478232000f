"""A circuit breaker per node: a node that stops answering gets its work paused, not failed.

When connecting to a node keeps failing, every step queued for it would otherwise burn its
retries and roll back, and every worker would sit in connect timeouts. After
``PROVISIONING_BREAKER_FAILURES`` consecutive connection failures the breaker *opens*: steps
for that node are deferred without an attempt being counted, the node is flagged in the admin
(``Node.health["breaker"]``), and after a cool-down one step is let through to probe it
(*half-open*). Success closes the breaker; another failure reopens it with a longer cool-down.
Other nodes' work and the billing queue never wait on it.

The state lives on the node row, so every worker process sees the same breaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from provisioning.models import Node

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MAX_COOLDOWN = 900
# A paused operation's heartbeat moves each time its step is let in to ask the breaker; the
# sweeper treats an operation whose heartbeat stood still for PROVISIONING_STALE_AFTER as
# lost. The longest pause is therefore a fraction of that time, so a paused operation is
# never taken for a lost one (and the sweeper also asks the breaker before it acts).
STALE_SHARE = 3


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    state: str
    retry_in: int = 0
    message: str = ""


def _threshold() -> int:
    return int(getattr(settings, "PROVISIONING_BREAKER_FAILURES", 3))


def _base_cooldown() -> int:
    return int(getattr(settings, "PROVISIONING_BREAKER_COOLDOWN", 60))


def longest_cooldown() -> int:
    """The longest pause between two probes: well under the sweeper's stale time."""
    stale = int(getattr(settings, "PROVISIONING_STALE_AFTER", 15 * 60))
    return max(1, min(MAX_COOLDOWN, stale // STALE_SHARE))


def _state(health: dict[str, Any]) -> dict[str, Any]:
    return dict((health or {}).get("breaker") or {})


def breaker_state_recorded(node: Node) -> bool:
    """Has the breaker anything on record for this node (failures, open, probing)? A node
    without a record is closed: steps on it need not ask ``breaker_allow``."""
    return bool(_state(node.health))


def breaker_pauses(node: Node) -> bool:
    """Is work on this node paused by the breaker (open, or half-open awaiting a probe)?"""
    return _state(node.health).get("state") == OPEN


def breaker_state(node: Node, *, now: datetime | None = None) -> str:
    state = _state(node.health)
    if state.get("state") != OPEN:
        return CLOSED
    reopen = datetime.fromisoformat(state["until"])
    return HALF_OPEN if (now or timezone.now()) >= reopen else OPEN


@transaction.atomic
def breaker_allow(*, node_id: int, now: datetime | None = None) -> Verdict:
    """May a step run on this node now? Half-open lets one probe through per cool-down."""
    now = now or timezone.now()
    node = Node.objects.select_for_update().get(pk=node_id)
    state = _state(node.health)
    if state.get("state") != OPEN:
        return Verdict(True, CLOSED)
    until = datetime.fromisoformat(state["until"])
    if now < until:
        wait = max(1, int((until - now).total_seconds()))
        return Verdict(
            False,
            OPEN,
            retry_in=wait,
            message=f"{node.name} is not answering ({state.get('last_error', 'no detail')}); "
            f"work on it is paused, next try in {wait} s",
        )
    # Half-open: this caller is the probe; the next ones wait for its outcome.
    state["until"] = (now + timedelta(seconds=int(state.get("cooldown", 60)))).isoformat()
    state["probing_since"] = now.isoformat()
    node.health = {**(node.health or {}), "breaker": state}
    node.save(update_fields=["health"])
    return Verdict(True, HALF_OPEN)


@transaction.atomic
def breaker_record_failure(*, node_id: int, error: str, now: datetime | None = None) -> str:
    """Count a failure to reach the node; returns the breaker's state afterwards."""
    now = now or timezone.now()
    node = Node.objects.select_for_update().get(pk=node_id)
    state = _state(node.health)
    failures = int(state.get("failures", 0)) + 1
    state.update(failures=failures, last_error=error[:300], last_failure_at=now.isoformat())
    if state.get("state") == OPEN or failures >= _threshold():
        previous = int(state.get("cooldown", 0))
        cooldown = min(longest_cooldown(), previous * 2 if previous else _base_cooldown())
        state.update(
            state=OPEN,
            cooldown=cooldown,
            until=(now + timedelta(seconds=cooldown)).isoformat(),
            opened_at=state.get("opened_at") or now.isoformat(),
        )
    node.health = {**(node.health or {}), "breaker": state, "ok": False}
    node.save(update_fields=["health"])
    return str(state.get("state", CLOSED))


def breaker_record_success(*, node_id: int) -> None:
    """The node answered: close the breaker (a no-op write-free path when it was closed)."""
    node = Node.objects.only("health").get(pk=node_id)
    if not _state(node.health):
        return
    with transaction.atomic():
        node = Node.objects.select_for_update().get(pk=node_id)
        health = dict(node.health or {})
        health.pop("breaker", None)
        health["ok"] = True
        node.health = health
        node.save(update_fields=["health"])
