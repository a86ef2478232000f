"""manage.py provisioning_sweep: resume or roll back operations that stopped moving."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from provisioning.workflow import operations_sweep


class Command(BaseCommand):
    help = "Resume or roll back provisioning operations whose worker stopped (run from cron)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=int, default=None, help="seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        counts = operations_sweep(stale_after=opts["stale_after"])
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
