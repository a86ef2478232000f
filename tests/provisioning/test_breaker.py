"""The per-node circuit breaker: open after repeated failures, probe after a cool-down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    breaker_allow,
    breaker_record_failure,
    breaker_record_success,
    breaker_state,
    longest_cooldown,
)
from provisioning.models import Node

pytestmark = pytest.mark.django_db


@pytest.fixture
def nodes(settings) -> tuple[Node, Node]:
    settings.PROVISIONING_BREAKER_FAILURES = 3
    settings.PROVISIONING_BREAKER_COOLDOWN = 60
    return (
        Node.objects.create(name="web1", address="127.0.0.1", roles=["web"]),
        Node.objects.create(name="web2", address="127.0.0.2", roles=["web"]),
    )


def test_opens_after_repeated_failures_and_pauses_only_that_node(nodes) -> None:
    web1, web2 = nodes
    now = timezone.now()
    # Two failures: still closed, work goes on
    for _ in range(2):
        assert breaker_record_failure(node_id=web1.pk, error="timed out", now=now) == CLOSED
    assert breaker_allow(node_id=web1.pk, now=now).allowed
    # The third opens it: work on web1 is paused with a reason, web2 is untouched
    assert breaker_record_failure(node_id=web1.pk, error="timed out", now=now) == OPEN
    verdict = breaker_allow(node_id=web1.pk, now=now + timedelta(seconds=10))
    assert not verdict.allowed
    assert verdict.retry_in == 50
    assert "web1 is not answering (timed out)" in verdict.message
    assert breaker_allow(node_id=web2.pk, now=now).allowed
    web1.refresh_from_db()
    assert web1.health["ok"] is False
    assert breaker_state(web1, now=now) == OPEN


def test_half_open_lets_one_probe_through_and_success_closes(nodes) -> None:
    web1, _ = nodes
    now = timezone.now()
    for _ in range(3):
        breaker_record_failure(node_id=web1.pk, error="refused", now=now)
    later = now + timedelta(seconds=61)
    web1.refresh_from_db()
    assert breaker_state(web1, now=later) == HALF_OPEN
    # One probe goes through; the next caller waits for its outcome
    assert breaker_allow(node_id=web1.pk, now=later).state == HALF_OPEN
    assert not breaker_allow(node_id=web1.pk, now=later + timedelta(seconds=1)).allowed
    # The probe succeeds: closed again, the flag is gone
    breaker_record_success(node_id=web1.pk)
    web1.refresh_from_db()
    assert "breaker" not in web1.health
    assert breaker_allow(node_id=web1.pk, now=later).allowed


def test_a_failed_probe_reopens_with_a_longer_cool_down(nodes) -> None:
    web1, _ = nodes
    now = timezone.now()
    for _ in range(3):
        breaker_record_failure(node_id=web1.pk, error="refused", now=now)
    probe_at = now + timedelta(seconds=61)
    assert breaker_allow(node_id=web1.pk, now=probe_at).allowed
    breaker_record_failure(node_id=web1.pk, error="refused", now=probe_at)
    verdict = breaker_allow(node_id=web1.pk, now=probe_at + timedelta(seconds=1))
    assert not verdict.allowed
    assert verdict.retry_in == 119  # 120 s now, doubled from 60


def test_the_longest_pause_stays_well_under_the_stale_time(nodes, settings) -> None:
    # given a node that keeps failing its probes for hours
    web1, _ = nodes
    now = timezone.now()
    for hour in range(40):
        at = now + timedelta(minutes=10 * hour)
        breaker_allow(node_id=web1.pk, now=at)
        breaker_record_failure(node_id=web1.pk, error="refused", now=at)
    web1.refresh_from_db()
    # then the pause between probes stopped growing below the sweeper's stale time, so a
    # paused step is let in (and its heartbeat moves) before the sweeper would call it lost
    cooldown = web1.health["breaker"]["cooldown"]
    assert cooldown == longest_cooldown()
    assert cooldown * 2 < settings.PROVISIONING_STALE_AFTER
    verdict = breaker_allow(node_id=web1.pk, now=at + timedelta(seconds=1))
    assert not verdict.allowed and verdict.retry_in < settings.PROVISIONING_STALE_AFTER
    # and a shorter stale time shortens the pause with it
    settings.PROVISIONING_STALE_AFTER = 120
    assert longest_cooldown() == 40
