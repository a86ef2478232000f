"""manage.py node_check [NAME...]: look at nodes over SSH and store their health."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning.management.commands.node_add import report_node
from provisioning.models import Node


class Command(BaseCommand):
    help = "Check nodes' prerequisites and health (all nodes when no name is given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*")

    def handle(self, *args: Any, **opts: Any) -> None:
        qs = Node.objects.all()
        if opts["names"]:
            qs = qs.filter(name__in=opts["names"])
        ok = True
        for node in qs:
            self.stdout.write(f"{node.name} ({node.address}:{node.port}, {node.status})")
            ok = report_node(self, node.pk) and ok
        if not ok:
            raise CommandError("some nodes are not ready")
