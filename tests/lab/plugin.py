"""The multi-node lab for the test suite (registered from ``tests/conftest.py``).

Fixtures
--------
``lab`` (session)
    Three Debian 12 nodes with systemd booted on a bridge of their own and prepared by the
    node bootstrap over SSH (``tests/lab/lab.py``; the first run builds and caches the
    template, later runs reuse it). The panel key is the test node's (``var/test-node``).
    Torn down at the end of the session. Needs root; skipped otherwise.
``lab_nodes`` (function)
    The lab's nodes added to the panel through ``node_register`` (what ``manage.py node_add``
    calls), each host key pinned and checked against the key on the node's own disk. Roles
    web, db, mail, dns on every node unless a test changes them.

Mark tests that use them with ``@pytest.mark.lab``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.lab import Lab, LabNode
from tests.node.harness import TestNode


@pytest.fixture(scope="session")
def lab(test_node: TestNode) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the node lab needs root (bridges, systemd-nspawn)")
    the_lab = Lab.open()
    try:
        started = time.monotonic()
        the_lab.up(panel_pubkey=Path(f"{test_node.key_path}.pub").read_text().strip())
        the_lab.timings["session_setup_s"] = time.monotonic() - started
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def lab_nodes(lab: Lab, db) -> list:
    """The lab's nodes as ``Node`` rows, host keys pinned through the node-add path."""
    from provisioning import nodes
    from provisioning.models import IPAddress

    rows = []
    for node in lab.nodes:
        row = nodes.node_register(
            name=node.name,
            address=node.address,
            roles=["web", "db", "mail", "dns"],
            capacity_accounts=100,
            shared_ips=[node.address],
        )
        # What node_add pinned is the key the node made for itself on first boot.
        assert row.host_key == node.host_key
        assert IPAddress.objects.filter(node=row, address=node.address).exists()
        rows.append(row)
    return rows


def lab_node(lab: Lab, name: str) -> LabNode:
    return next(n for n in lab.nodes if n.name == name)
