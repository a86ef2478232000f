"""A node that stops answering: its work waits and it is flagged; other nodes carry on."""

from __future__ import annotations

import secrets
import time

import pytest
from django.conf import settings

from provisioning import services
from provisioning.breaker import OPEN
from provisioning.models import Node, Operation, Service
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_work_on_a_dead_node_waits_while_other_nodes_work(worker, hosting_node) -> None:
    # Given a second node that does not answer (nothing listens on its SSH port)
    dead = Node.objects.create(
        name="dead1", address="127.0.0.1", port=1, roles=["web"], host_key=hosting_node.host_key
    )
    plan = PlanFactory.create()
    stuck = Service.objects.create(
        customer=CustomerFactory.create(), plan=plan, node=dead,
        domain=unique_domain("breaker-dead"),
        username=f"{settings.PROVISIONING_USER_PREFIX}brk{secrets.token_hex(2)}",
    )  # fmt: skip
    # When an account is created there
    waiting = services.operation_start(service=stuck, kind=Operation.Kind.CREATE)
    # Then the breaker opens, and the operation waits instead of failing or rolling back
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dead.refresh_from_db()
        if (dead.health or {}).get("breaker", {}).get("state") == OPEN:
            break
        time.sleep(0.2)
    assert dead.health["breaker"]["state"] == OPEN
    assert "cannot connect" in dead.health["breaker"]["last_error"]
    assert dead.health["ok"] is False
    waiting = Operation.objects.get(pk=waiting.pk)
    assert waiting.state in (Operation.State.QUEUED, Operation.State.VALIDATING)
    assert waiting.events.filter(detail__contains="waits for the node").exists()

    # And an account on the healthy node is created meanwhile
    fine_domain = unique_domain("breaker-fine")
    fine = services.service_order(customer=CustomerFactory.create(), plan=plan, domain=fine_domain)
    fine_op = wait_for_operation(fine.operations.get(kind=Operation.Kind.CREATE))
    assert fine_op.state == Operation.State.COMPLETED, fine_op.reason
    assert http_get(fine_domain)[0] == 200

    # When the node answers again (here: its address is fixed), the waiting work finishes
    Node.objects.filter(pk=dead.pk).update(port=hosting_node.port)
    done = wait_for_operation(waiting, timeout=240)
    assert done.state == Operation.State.COMPLETED, done.reason
    dead.refresh_from_db()
    assert "breaker" not in dead.health

    for service in (Service.objects.get(pk=stuck.pk), Service.objects.get(pk=fine.pk)):
        end = wait_for_operation(services.service_terminate(service=service))
        assert end.state == Operation.State.COMPLETED, end.reason
