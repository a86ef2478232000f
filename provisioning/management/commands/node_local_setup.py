"""manage.py node_local_setup: make this machine a hosting node for the demo (idempotent).

As root: creates the panel's SSH keys (workers', web processes') if missing, runs
deploy/node/bootstrap.sh with the test profile (sshd on 127.0.0.1:2222, loopback only) and
registers the node "local" with its host key pinned and 127.0.0.1 as its shared IP. Without
root it only registers a node that is already bootstrapped.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import nodes
from provisioning.errors import ProvisioningRefused
from provisioning.management.commands.node_add import report_node

BOOTSTRAP = settings.BASE_DIR / "deploy" / "node" / "bootstrap.sh"


class Command(BaseCommand):
    help = "Bootstrap this machine as a hosting node on loopback and register it as 'local'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="local")
        parser.add_argument("--port", type=int, default=2222)
        parser.add_argument("--parts", default="", help='only these bootstrap parts, e.g. "10 20"')
        parser.add_argument("--skip-bootstrap", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        public_key = nodes.panel_public_key(create=True)
        web_key = nodes.panel_public_key(create=True, web=True)
        if not opts["skip_bootstrap"]:
            if os.geteuid() != 0:
                raise CommandError("run as root to bootstrap this machine, or --skip-bootstrap")
            env = {
                **os.environ,
                "NODE_PROFILE": "test",
                # A local node has no public name: Pebble stands in for Let's Encrypt.
                "NODE_ACME": "pebble",
                "PANEL_PUBKEY": public_key,
                "PANEL_WEB_PUBKEY": web_key,
                "HW_SSH_PORT": str(opts["port"]),
            }
            if opts["parts"]:
                env["NODE_PARTS"] = opts["parts"]
            result = subprocess.run([str(BOOTSTRAP)], env=env, check=False)
            if result.returncode != 0:
                raise CommandError("the node bootstrap failed (see its output above)")
        try:
            node = nodes.node_register(
                name=opts["name"],
                address="127.0.0.1",
                port=opts["port"],
                roles=["web", "db", "mail", "dns"],
                shared_ips=["127.0.0.1"],
                repin=True,
            )
        except ProvisioningRefused as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"node {node.name} registered at 127.0.0.1:{node.port}")
        report_node(self, node.pk)
