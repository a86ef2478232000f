"""The node services the resource tests talk to, started by the node's own bootstrap parts.

The parts are idempotent, so this is cheap when the node already runs (for example after the
engine's harness bootstrapped it). NODE_ACME=pebble makes it a test node: DNS on 5353, Pebble,
mail on loopback only.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from provisioning.resources.dns import HttpTransport, PowerDNS

ROOT = Path(__file__).resolve().parents[2]
PARTS = ROOT / "deploy" / "node" / "parts"
DNS_PORT = 5353


def run_part(name: str) -> None:
    env = {**os.environ, "NODE_ACME": "pebble", "PDNS_LOCAL_PORT": str(DNS_PORT)}
    result = subprocess.run(
        ["bash", str(PARTS / name)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def powerdns_node() -> PowerDNS:
    run_part("60-powerdns.sh")
    key = Path("/etc/hostwright/pdns-api-key").read_text().strip()
    return PowerDNS(HttpTransport(base_url="http://127.0.0.1:8081", api_key=key))


@pytest.fixture
def pdns(powerdns_node: PowerDNS) -> PowerDNS:
    return powerdns_node


@pytest.fixture
def zone_name(powerdns_node: PowerDNS):
    """A fresh zone name; whatever the test left of that zone is deleted afterwards."""
    name = f"hw-{uuid.uuid4().hex[:10]}.test"
    yield name
    powerdns_node.delete_zone(name)
