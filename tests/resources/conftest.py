"""The node services the resource tests talk to, started by the node's own bootstrap parts.

The parts are idempotent, so this is cheap when the node already runs (for example after the
engine's harness bootstrapped it). NODE_PROFILE=test and NODE_ACME=pebble make it a test node:
DNS on 5353, Pebble, mail on loopback only.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hwagent import dns as agent_dns

from tests.node.harness import run_logged

ROOT = Path(__file__).resolve().parents[2]
PARTS = ROOT / "deploy" / "node" / "parts"
DNS_PORT = 5353


def run_part(name: str) -> None:
    env = {
        **os.environ,
        "NODE_PROFILE": "test",
        "NODE_ACME": "pebble",
        "PDNS_LOCAL_PORT": str(DNS_PORT),
        "HW_NODE_LIB": str(PARTS.parent / "lib.sh"),
    }
    log = ROOT / "var" / "test-node" / f"part-{name}.log"
    result = run_logged(["bash", str(PARTS / name)], log=log, env=env, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}"


@pytest.fixture(scope="session")
def powerdns_node() -> None:
    """PowerDNS on the node, started by its part (the node agent's ``dns.*`` talk to it)."""
    run_part("60-powerdns.sh")


@pytest.fixture
def zone_name(powerdns_node: None):
    """A fresh zone name; whatever the test left of that zone is deleted afterwards."""
    name = f"hw-{uuid.uuid4().hex[:10]}.test"
    yield name
    agent_dns.zone_remove(domain=name)


def run_on_node(node_script, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a NodeScript the way the engine does: ``bash -s`` with the script on stdin."""
    result = subprocess.run(
        node_script.argv(), input=node_script.script, capture_output=True, text=True, timeout=60
    )
    if check:
        assert result.returncode == 0, f"script failed:\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def mail_node() -> None:
    run_part("80-mail.sh")


@pytest.fixture(scope="session")
def mariadb_node() -> None:
    """MariaDB on the node, started by its part."""
    run_part("50-mariadb.sh")
