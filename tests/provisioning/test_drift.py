"""Drift detection on the real node: a server block removed by hand is found and repaired."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from provisioning import services
from provisioning.drift import drift_check_node, drift_repair
from provisioning.models import DriftFinding, Operation, Service
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_until(check, timeout: float = 10) -> bool:
    """nginx reloads in the background: old workers may answer for a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def open_findings(node, **filters):
    return DriftFinding.objects.filter(node=node, resolved_at__isnull=True, **filters)


def test_a_server_block_removed_by_hand_is_found_and_repaired(worker, hosting_node) -> None:
    # Given a live account on the node
    domain = unique_domain("drift-e2e")
    service = services.service_order(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), domain=domain
    )
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE))
    assert create.state == Operation.State.COMPLETED, create.reason
    service = Service.objects.get(pk=service.pk)
    user = service.username
    assert http_get(domain)[0] == 200
    # And a first check finds nothing wrong with it
    drift_check_node(node_id=hosting_node.pk)
    assert not open_findings(hosting_node, service=service).exists()

    # When someone deletes its server block on the node by hand
    Path(f"/etc/nginx/hostwright/sites/{user}.conf").unlink()
    subprocess.run(["nginx", "-s", "reload"], check=True)
    assert wait_until(lambda: domain not in http_get(domain)[1])

    # Then the next check records exactly that, against the account
    counts = drift_check_node(node_id=hosting_node.pk)
    assert counts["opened"] >= 1
    finding = open_findings(hosting_node, service=service).get()
    assert (finding.kind, finding.problem, finding.name) == ("site", "missing", user)
    # And running the check again does not duplicate it
    drift_check_node(node_id=hosting_node.pk)
    assert open_findings(hosting_node, service=service).count() == 1

    # When staff repair it
    repair = wait_for_operation(drift_repair(finding=finding))
    # Then the repair converged the account: the site is back, nothing else was touched
    assert repair.state == Operation.State.COMPLETED, repair.reason
    assert wait_until(lambda: domain in http_get(domain)[1])
    assert Service.objects.get(pk=service.pk).state == Service.State.ACTIVE
    # And the next check resolves the finding
    drift_check_node(node_id=hosting_node.pk)
    finding.refresh_from_db()
    assert finding.resolved_at is not None
    assert not open_findings(hosting_node, service=service).exists()

    # Clean up through the engine, as a customer's termination would
    end = wait_for_operation(services.service_terminate(service=Service.objects.get(pk=service.pk)))
    assert end.state == Operation.State.COMPLETED, end.reason


def test_an_unknown_account_on_the_node_is_reported_not_removed(hosting_node) -> None:
    # Given a Linux user tagged as Hostwright's that no live account owns
    name = "hwtorphan1"
    subprocess.run(["useradd", "-M", "-c", "hostwright service 999999", name], check=False)
    try:
        drift_check_node(node_id=hosting_node.pk)
        finding = open_findings(hosting_node, kind="user", name=name).get()
        assert finding.problem == "unexpected"
        assert finding.service is None
        # Repair refuses: a person decides what happens to unknown resources
        with pytest.raises(Exception, match="need a person"):
            drift_repair(finding=finding)
        assert subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0
    finally:
        subprocess.run(["userdel", name], check=False)
