"""Placement: node groups with a policy each, plans pinned to groups, draining nodes."""

from __future__ import annotations

import pytest

from provisioning import nodes, selectors
from provisioning.models import Node, NodeGroup, Service
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db


def _node(name: str, *, group: NodeGroup | None = None, capacity: int = 10, **kw) -> Node:
    return Node.objects.create(
        name=name,
        address=f"192.0.2.{Node.objects.count() + 10}",
        roles=kw.pop("roles", ["web", "db"]),
        capacity_accounts=capacity,
        group=group,
        **kw,
    )


def _accounts(node: Node, count: int, plan) -> None:
    customer = CustomerFactory.create()
    for i in range(count):
        Service.objects.create(
            customer=customer, plan=plan, node=node, username=f"u{node.pk}x{i}",
            domain=f"a{i}.{node.name}.example",
        )  # fmt: skip


def test_most_free_capacity_takes_the_node_with_the_most_room():
    # given a group placing by free capacity: 10 slots with 2 used, 20 slots with 15 used
    group = NodeGroup.objects.create(name="g", policy=NodeGroup.Policy.MOST_FREE)
    plan = PlanFactory.create()
    roomy, busy = _node("roomy", group=group, capacity=10), _node("busy", group=group, capacity=20)
    _accounts(roomy, 2, plan)
    _accounts(busy, 15, plan)
    # then the node with 8 free slots wins over the one with 5
    assert selectors.node_for_new_service(plan=plan) == roomy


def test_fewest_accounts_takes_the_least_used_node_whatever_its_size():
    group = NodeGroup.objects.create(name="g", policy=NodeGroup.Policy.FEWEST_ACCOUNTS)
    plan = PlanFactory.create()
    roomy, busy = _node("roomy", group=group, capacity=100), _node("small", group=group, capacity=5)
    _accounts(roomy, 3, plan)
    _accounts(busy, 1, plan)
    assert selectors.node_for_new_service(plan=plan) == busy


def test_random_uses_every_node_with_room_and_never_a_full_or_draining_one():
    group = NodeGroup.objects.create(name="g", policy=NodeGroup.Policy.RANDOM)
    plan = PlanFactory.create()
    a, b = _node("a", group=group), _node("b", group=group)
    full = _node("full", group=group, capacity=1)
    _accounts(full, 1, plan)
    draining = _node("draining", group=group, status=Node.Status.DRAINING)
    picked = {selectors.node_for_new_service(plan=plan) for _ in range(60)}
    # 60 draws from two nodes: both come up (the chance of one alone is 2 in 2**60)
    assert picked == {a, b}
    assert full not in picked and draining not in picked


def test_a_pinned_plan_goes_only_to_its_groups_and_reserved_groups_take_no_other_plan():
    # given a general group and a reserved premium group with a pinned plan
    general = NodeGroup.objects.create(name="a-general")
    premium = NodeGroup.objects.create(name="b-premium", reserved=True)
    cheap, gold = PlanFactory.create(), PlanFactory.create()
    premium.plans.add(gold)
    g1 = _node("g1", group=general, capacity=1000)
    p1 = _node("p1", group=premium, capacity=5)
    # then the pinned plan lands in its group even though the general node has more room
    assert selectors.node_for_new_service(plan=gold) == p1
    # and the other plan never lands in the reserved group
    assert selectors.node_for_new_service(plan=cheap) == g1
    nodes.node_set_status(node=g1, status=Node.Status.DRAINING)
    assert selectors.node_for_new_service(plan=cheap) is None
    # and a pinned plan whose groups are full gets no node rather than another group's
    _accounts(p1, 5, gold)
    nodes.node_set_status(node=g1, status=Node.Status.ACTIVE)
    assert selectors.node_for_new_service(plan=gold) is None


def test_groups_are_tried_in_order_and_ungrouped_nodes_come_last():
    first = NodeGroup.objects.create(name="a", policy=NodeGroup.Policy.FEWEST_ACCOUNTS)
    plan = PlanFactory.create()
    loose = _node("loose", capacity=1000)
    in_group = _node("in-group", group=first, capacity=1)
    assert selectors.node_for_new_service(plan=plan) == in_group
    _accounts(in_group, 1, plan)
    assert selectors.node_for_new_service(plan=plan) == loose


def test_a_node_without_the_role_or_disk_for_the_plan_is_not_chosen():
    plan = PlanFactory.create(disk_mb=5000)
    _node("mail-only", roles=["mail"])
    _node("tiny-disk", capacity_disk_mb=1000)
    assert selectors.node_for_new_service(plan=plan) is None
