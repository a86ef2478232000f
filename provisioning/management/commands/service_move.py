"""``manage.py service_move <domain> <node>``: move a hosting account to another node."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import selectors, services
from provisioning.models import Node


class Command(BaseCommand):
    help = "Move a hosting account (by its domain) to another node; prints the operation id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument("node", help="the name of the node to move it to")

    def handle(self, *args: Any, **options: Any) -> None:
        service = selectors.live_services().filter(domain__iexact=options["domain"]).first()
        if service is None:
            raise CommandError(f"no live account hosts {options['domain']}")
        node = Node.objects.filter(name=options["node"]).first()
        if node is None:
            raise CommandError(f"no node named {options['node']}")
        try:
            operation = services.service_move(service=service, node=node)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"operation {operation.pk} queued: move {service.domain} to {node}")
