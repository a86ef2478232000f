"""Start today's account backups (for cron; the same job runs nightly on Celery beat)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from provisioning.resources.services import backups_schedule


class Command(BaseCommand):
    help = "Start a backup of every active account that has none today."

    def handle(self, *args: Any, **options: Any) -> None:
        started = backups_schedule(now=timezone.now())
        self.stdout.write(f"{len(started)} backups started")
