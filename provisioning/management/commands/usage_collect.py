"""Measure what the hosting accounts use on their nodes (for cron)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from provisioning import usage
from provisioning.models import Node


class Command(BaseCommand):
    help = "Measure disk, memory and this month's traffic of the accounts on every active node."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("node", nargs="?", help="a node's name; all active nodes if omitted")

    def handle(self, *args: Any, node: str | None = None, **options: Any) -> None:
        if node:
            report: dict[str, object] = {
                node: usage.usage_collect_node(node_id=Node.objects.get(name=node).pk)
            }
        else:
            report = dict(usage.usage_collect_all())
        for name, result in report.items():
            self.stdout.write(
                f"{name}: {result} accounts measured"
                if isinstance(result, int)
                else f"{name}: {result}"
            )
