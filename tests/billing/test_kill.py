"""Killing the daily run midway (SIGKILL, as the OOM killer or a reboot would) and starting it
again issues every renewal invoice once, with numbers that stay gapless."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count

from bench.billing_run import TODAY, build
from billing.automation import billing_run
from billing.models import BillingRun, Invoice

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def test_killed_run_resumes_without_duplicates(billing_settings):
    # given 3,000 subscriptions all due within the renewal window (three batches)
    build(3000, due_share=1)
    # when the run is started as cron would and killed once its first batch is committed
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "billing_run", "--date", TODAY.isoformat()],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hosting.test_settings",
            "DATABASE_URL": _database_url(),
            "LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = False
    while proc.poll() is None:
        if Invoice.objects.exists():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait()
    issued_before = Invoice.objects.count()
    if killed:
        # the day is recorded as still running: the kill left it unfinished
        assert BillingRun.objects.get(run_date=TODAY).status == BillingRun.Status.RUNNING
    # and the run is started again
    run = billing_run(today=TODAY)
    # then every subscription has exactly one renewal invoice
    assert run.status == BillingRun.Status.COMPLETED
    per_sub = Invoice.objects.values("subscription").annotate(n=Count("id"))
    assert per_sub.count() == 3000
    assert {row["n"] for row in per_sub} == {1}
    # and the numbers run from 1 to 3,000 without a gap
    numbers = sorted(
        int(str(n).rsplit("-", 1)[1]) for n in Invoice.objects.values_list("number", flat=True)
    )
    assert numbers == list(range(1, 3001))
    assert issued_before <= 3000
