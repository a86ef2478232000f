"""Renew certificates expiring within 30 days (for cron; also daily on Celery beat)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from provisioning.resources.services import certificates_renew


class Command(BaseCommand):
    help = "Start certificate renewals the renewal plan picks (backoff and CA budget applied)."

    def handle(self, *args: Any, **options: Any) -> None:
        started = certificates_renew(now=timezone.now())
        self.stdout.write(f"{len(started)} renewals started")
