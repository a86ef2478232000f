"""Accounts placed across the three lab nodes by each policy; a drained node gets none."""

from __future__ import annotations

import http.client

import pytest

from provisioning import nodes, services
from provisioning.models import Node, NodeGroup, Operation, Service
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import unique_domain, wait_for_operation

pytestmark = [pytest.mark.lab, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _order(plan, count: int, label: str) -> list[Service]:
    customer = CustomerFactory.create()
    return [
        services.service_order(customer=customer, plan=plan, domain=unique_domain(label))
        for _ in range(count)
    ]


def _completed(ordered: list[Service]) -> list[Service]:
    for service in ordered:
        op = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE), timeout=300)
        assert op.state == Operation.State.COMPLETED, f"{op.reason} {op.error}"
    return list(Service.objects.select_related("node").filter(pk__in=[s.pk for s in ordered]))


def _answers(node: Node | None, domain: str) -> int:
    assert node is not None
    conn = http.client.HTTPConnection(node.address, 80, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": domain})
        return conn.getresponse().status
    finally:
        conn.close()


def _group(lab_nodes: list[Node], policy: str) -> NodeGroup:
    group = NodeGroup.objects.create(name=f"lab-{policy.replace('_', '-')}", policy=policy)
    Node.objects.filter(pk__in=[n.pk for n in lab_nodes]).update(group=group)
    return group


def test_fewest_accounts_puts_one_account_on_each_node(worker, lab_nodes):
    # given the three lab nodes in a group placing by fewest accounts
    _group(lab_nodes, NodeGroup.Policy.FEWEST_ACCOUNTS)
    plan = PlanFactory.create()

    # when three accounts are ordered
    placed = _completed(_order(plan, 3, "fewest"))

    # then each node got one, and each site answers on its own node only
    assert sorted(str(s.node) for s in placed) == sorted(n.name for n in lab_nodes)
    for service in placed:
        assert _answers(service.node, service.domain) == 200
        for other in lab_nodes:
            if other.pk != service.node_id:
                assert _answers(other, service.domain) == 404


def test_most_free_capacity_fills_the_roomiest_node_and_a_drained_node_gets_none(worker, lab_nodes):
    # given a group placing by free capacity, the first node much larger, the second draining
    _group(lab_nodes, NodeGroup.Policy.MOST_FREE)
    big, drained, small = lab_nodes
    Node.objects.filter(pk=big.pk).update(capacity_accounts=50)
    Node.objects.filter(pk=small.pk).update(capacity_accounts=10)
    nodes.node_set_status(node=drained, status=Node.Status.DRAINING)
    plan = PlanFactory.create()

    # when two accounts are ordered
    placed = _completed(_order(plan, 2, "mostfree"))

    # then both went to the roomiest node, none to the drained one
    assert [s.node_id for s in placed] == [big.pk, big.pk]
    assert not Service.objects.filter(node=drained).exists()
    for service in placed:
        assert _answers(big, service.domain) == 200
        assert _answers(drained, service.domain) == 404


def test_random_spreads_over_active_nodes_and_skips_a_drained_one(worker, lab_nodes):
    # given a group placing at random, one node draining
    _group(lab_nodes, NodeGroup.Policy.RANDOM)
    drained = lab_nodes[2]
    nodes.node_set_status(node=drained, status=Node.Status.DRAINING)
    plan = PlanFactory.create()

    # when accounts are ordered
    placed = _completed(_order(plan, 4, "random"))

    # then all are on active nodes of the group and running there
    assert all(s.node_id != drained.pk for s in placed)
    for service in placed:
        assert _answers(service.node, service.domain) == 200
