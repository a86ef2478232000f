"""The daily billing run for cron: ``manage.py billing_run [--date YYYY-MM-DD] [--force]``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.automation import RunLocked, billing_run


class Command(BaseCommand):
    help = "Issue renewals, charge saved cards, remind, suspend, terminate and unsuspend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--date",
            type=dt.date.fromisoformat,
            default=None,
            help="The day to run for (default: today). Lets staff catch up a missed day.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Run again even if the day is recorded as done."
        )

    def handle(self, *args: Any, date: dt.date | None, force: bool, **options: Any) -> None:
        try:
            run = billing_run(today=date, force=force)
        except RunLocked as exc:
            raise CommandError(f"Not started: {exc}.") from exc
        counts = ", ".join(f"{k}={v}" for k, v in run.counts.items()) or "nothing to do"
        self.stdout.write(f"Billing run {run.run_date}: {run.status} ({counts})")
