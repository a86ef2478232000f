"""Nightly backups and certificate renewals are scheduled, once a day, skipping busy accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hosting.celery import app
from provisioning.models import Node, Operation, Service
from provisioning.resources.services import backups_schedule
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db


def make(domain: str, state: str = "active") -> Service:
    node = Node.objects.get_or_create(name="web1", defaults={"address": "127.0.0.1"})[0]
    return Service.objects.create(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), node=node, domain=domain,
        username=domain.split(".")[0].replace("-", "")[:20], state=state,
    )  # fmt: skip


def test_backups_start_once_a_day_for_active_accounts_only(settings) -> None:
    settings.BACKUP_KEEP = 5
    active, other = make("bk-one.example"), make("bk-two.example")
    make("bk-gone.example", state="terminated")
    busy = make("bk-busy.example")
    Operation.objects.create(service=busy, kind="create")  # still queued: busy
    now = timezone.now()
    # The first run starts one backup per active, idle account, with the retention set
    started = backups_schedule(now=now)
    assert {op.service_id for op in started} == {active.pk, other.pk}
    assert all(op.kind == "backup_create" and op.params["keep"] == 5 for op in started)
    # A second run the same day starts nothing new
    assert backups_schedule(now=now + timedelta(minutes=5)) == []
    # The next day, the accounts are due again (once their operations have finished)
    Operation.objects.filter(kind="backup_create").update(state="completed")
    Operation.objects.filter(service=busy).update(state="completed")
    tomorrow = backups_schedule(now=now + timedelta(days=1))
    assert {op.service_id for op in tomorrow} == {active.pk, other.pk, busy.pk}


def test_both_jobs_are_on_the_beat_schedule() -> None:
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"provisioning.backups_nightly", "provisioning.certificates_renew"} <= tasks
    app.loader.import_default_modules()
    assert {"provisioning.backups_nightly", "provisioning.certificates_renew"} <= set(app.tasks)
