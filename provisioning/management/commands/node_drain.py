"""manage.py node_drain NAME: stop placing new accounts on a node (--undo to reactivate)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning.models import Node
from provisioning.nodes import node_set_status


class Command(BaseCommand):
    help = "Drain a node: its accounts keep running, new accounts go elsewhere."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--undo", action="store_true", help="make the node active again")

    def handle(self, *args: Any, **opts: Any) -> None:
        node = Node.objects.filter(name=opts["name"]).first()
        if node is None:
            raise CommandError(f"no node named {opts['name']}")
        status = Node.Status.ACTIVE if opts["undo"] else Node.Status.DRAINING
        node_set_status(node=node, status=status)
        self.stdout.write(f"{node.name}: {status}")
