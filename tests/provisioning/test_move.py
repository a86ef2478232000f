"""Starting a move without a node: who may, where to, which address, and the kind's steps."""

from __future__ import annotations

import pytest

from provisioning import services
from provisioning.errors import ProvisioningRefused
from provisioning.models import IPAddress, Node, Operation, Service
from provisioning.steps.base import get_kind
from tests.factories import CustomerFactory, PlanFactory, UserFactory

pytestmark = pytest.mark.django_db


def _node(name: str, address: str, **kw) -> Node:
    node = Node.objects.create(
        name=name, address=address, port=22, roles=["web", "db", "mail", "dns"],
        capacity_accounts=10, host_key="ssh-ed25519 AAAA", **kw,
    )  # fmt: skip
    IPAddress.objects.create(address=address, node=node)
    return node


@pytest.fixture
def old():
    return _node("old", "192.0.2.1")


@pytest.fixture
def new():
    return _node("new", "192.0.2.2")


@pytest.fixture
def service(old) -> Service:
    service = services.service_order(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), domain="moving.example.com"
    )
    Operation.objects.filter(service=service).update(state="completed")
    Service.objects.filter(pk=service.pk).update(state="active")
    return Service.objects.select_related("node", "ip").get(pk=service.pk)


def test_a_move_is_queued_with_both_nodes_and_the_new_address(service, old, new):
    # when staff move the account
    op = services.service_move(service=service, node=new)

    # then one move is queued naming the old and the new node and addresses
    assert (op.kind, op.state) == ("move", "queued")
    assert op.params == {
        "source_node_id": old.pk,
        "source_ip_id": service.ip_id,
        "target_node_id": new.pk,
        "target_ip_id": IPAddress.objects.get(node=new).pk,
    }
    # and the service stays where it is until the move switches it
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    assert service.node_id == old.pk


def test_the_move_builds_on_the_new_node_before_it_freezes_switches_and_cleans(service):
    names = [s.name for s in get_kind("move").steps]
    assert names.index("move_sync") > names.index("move_freeze") > names.index("move_copy")
    assert names[-4:] == ["move_verify", "move_switch", "move_cron", "move_cleanup"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"status": Node.Status.DRAINING}, "takes no accounts"),
        ({"roles": ["mail"]}, "takes no accounts"),
        ({"capacity_accounts": 0}, "no room"),
    ],
)
def test_a_node_that_takes_no_accounts_is_refused(service, new, change, words):
    Node.objects.filter(pk=new.pk).update(**change)
    new.refresh_from_db()
    with pytest.raises(ProvisioningRefused, match=words):
        services.service_move(service=service, node=new)
    assert not Operation.objects.filter(kind="move").exists()


def test_the_same_node_is_refused(service, old):
    with pytest.raises(ProvisioningRefused, match="already"):
        services.service_move(service=service, node=old)


def test_a_dedicated_address_needs_a_free_one_on_the_new_node(service, old, new):
    dedicated = IPAddress.objects.create(address="192.0.2.10", node=old, kind="dedicated")
    Service.objects.filter(pk=service.pk).update(ip=dedicated)
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    with pytest.raises(ProvisioningRefused, match="no free dedicated"):
        services.service_move(service=service, node=new)
    spare = IPAddress.objects.create(address="192.0.2.20", node=new, kind="dedicated")
    op = services.service_move(service=service, node=new)
    assert op.params["target_ip_id"] == spare.pk


def test_customers_cannot_move_their_account(service, new):
    customer_user = UserFactory.create(is_staff=False)
    with pytest.raises(ProvisioningRefused, match="support staff"):
        services.service_move(service=service, node=new, actor=customer_user)


def test_a_suspended_account_is_not_moved(service, new):
    Service.objects.filter(pk=service.pk).update(state="suspended")
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    with pytest.raises(ProvisioningRefused, match="suspended"):
        services.service_move(service=service, node=new)


def test_staff_pick_the_node_on_a_page_of_its_own_then_the_move_is_queued(client, service, new):
    from accounts.roles import ADMINISTRATOR
    from tests.staff import make_staff, sign_in_staff

    # given an administrator on the services page
    sign_in_staff(client, make_staff("ada@hostwright.test", ADMINISTRATOR))
    url = "/admin/provisioning/service/"
    data = {"action": "move_to_node", "_selected_action": [service.pk]}

    # when they choose "Move to another node", they are asked where to
    asked = client.post(url, data)
    assert asked.status_code == 200
    assert b"Move to another node" in asked.content and b'name="node"' in asked.content
    assert not Operation.objects.filter(kind="move").exists()

    # and when they pick the node, the move is queued
    done = client.post(url, {**data, "node": new.pk})
    assert done.status_code == 302
    op = Operation.objects.get(kind="move")
    assert op.params["target_node_id"] == new.pk
