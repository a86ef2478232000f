from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from support.services import autoclose_days, tickets_autoclose


class Command(BaseCommand):
    help = "Close tickets that were resolved more than SUPPORT_AUTOCLOSE_DAYS days ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="override the setting")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        closed = tickets_autoclose(days=days)
        used = autoclose_days() if days is None else days
        self.stdout.write(f"closed {closed} ticket(s) resolved more than {used} day(s) ago")
