"""Compare nodes with the database and record the differences (for cron)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from provisioning import drift
from provisioning.models import Node


class Command(BaseCommand):
    help = "Check every active node (or the one named) for drift from the database."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("node", nargs="?", help="a node's name; all active nodes if omitted")

    def handle(self, *args: Any, node: str | None = None, **options: Any) -> None:
        if node:
            report: dict[str, object] = {
                node: drift.drift_check_node(node_id=Node.objects.get(name=node).pk)
            }
        else:
            report = dict(drift.drift_check_all())
        for name, result in report.items():
            self.stdout.write(f"{name}: {result}")
