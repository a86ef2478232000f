"""manage.py node_add NAME ADDRESS: pin a node's host key and report what it is missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import nodes, ssh
from provisioning.errors import ProvisioningRefused


class Command(BaseCommand):
    help = "Add (or update) a hosting node: fetch and pin its host key, check prerequisites."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("address")
        parser.add_argument("--port", type=int, default=22)
        parser.add_argument("--user", default="root")
        parser.add_argument("--roles", default="web,db", help="comma-separated: web,mail,dns,db")
        parser.add_argument("--capacity", type=int, default=500, help="accounts")
        parser.add_argument("--shared-ip", action="append", default=[], dest="shared_ips")
        parser.add_argument("--group", help="placement group (see NodeGroup in the admin)")
        parser.add_argument("--repin", action="store_true", help="accept a changed host key")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            node = nodes.node_register(
                name=opts["name"],
                address=opts["address"],
                port=opts["port"],
                ssh_user=opts["user"],
                roles=[r.strip() for r in opts["roles"].split(",") if r.strip()],
                capacity_accounts=opts["capacity"],
                shared_ips=opts["shared_ips"],
                group=opts["group"],
                repin=opts["repin"],
            )
        except ProvisioningRefused as exc:
            raise CommandError("; ".join(exc.messages)) from None
        fp = ssh.fingerprint(ssh.parse_host_key(node.host_key))
        self.stdout.write(f"{node.name}: pinned host key {fp}")
        report_node(self, node.pk)


def report_node(cmd: BaseCommand, node_id: int) -> bool:
    report = nodes.node_check_run(node_id=node_id)
    if report["error"]:
        cmd.stdout.write(cmd.style.ERROR(f"cannot check the node: {report['error']}"))
        return False
    if report["missing"]:
        cmd.stdout.write(cmd.style.WARNING("missing: " + ", ".join(report["missing"])))
        cmd.stdout.write("run deploy/node/bootstrap.sh on the node, then manage.py node_check")
        return False
    extra = f", {report['disk_free_mb']} MB free" if "disk_free_mb" in report else ""
    cmd.stdout.write(cmd.style.SUCCESS(f"all prerequisites present{extra}"))
    return True
