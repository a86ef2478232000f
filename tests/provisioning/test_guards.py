"""The state table every operation start obeys, and what customer tokens may reach."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Membership
from api.services import api_token_create
from provisioning import guards, services
from provisioning.errors import ProvisioningRefused
from provisioning.models import Node, Operation, Service
from provisioning.resources import services as resources
from tests.factories import CustomerFactory, PlanFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def node() -> Node:
    return Node.objects.create(name="web1", address="127.0.0.1", roles=["web", "dns", "mail"])


def make(customer, node, domain: str, state: str = "active", username: str = "") -> Service:
    service = Service.objects.create(
        customer=customer,
        plan=PlanFactory.create(databases=3, mailboxes=3),
        node=node,
        domain=domain,
        username=username or domain.split(".")[0].replace("-", "")[:12],
    )
    Service.objects.filter(pk=service.pk).update(state=state)
    return Service.objects.get(pk=service.pk)


# --- the state table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kind", "staff", "allowed"),
    [
        ("terminated", "dns_records", True, False),
        ("terminated", "terminate", True, False),
        ("terminated", "backup_create", True, False),
        ("suspended", "dns_records", False, False),
        ("suspended", "mailbox_create", True, False),
        ("suspended", "backup_create", False, False),
        ("suspended", "backup_create", True, True),
        ("suspended", "unsuspend", True, True),
        ("suspended", "terminate", False, True),
        ("active", "dns_records", False, True),
        ("active", "create", True, False),
        ("active", "repair", False, False),
        ("active", "repair", True, True),
        ("failed", "mailbox_create", True, False),
        ("failed", "terminate", False, True),
        ("pending", "dns_records", True, False),
    ],
)
def test_operation_start_obeys_the_state_table(
    node, customer, owner, state, kind, staff, allowed
) -> None:
    # given a service in a state and an actor (a customer, or staff)
    service = make(customer, node, f"{state}-{kind.replace('_', '')}.example", state=state)
    actor = UserFactory.create(is_staff=True) if staff else owner
    # when the operation is started, then it starts exactly when the table says so
    if allowed:
        op = services.operation_start(service=service, kind=kind, actor=actor)
        assert op.kind == kind
    else:
        with pytest.raises(ProvisioningRefused) as refused:
            services.operation_start(service=service, kind=kind, actor=actor)
        assert refused.value.code == "state"
        assert not Operation.objects.filter(service=service).exists()


def test_system_actor_counts_as_staff_and_retry_is_checked_too(node, customer) -> None:
    service = make(customer, node, "susp-sys.example", state="suspended")
    assert guards.operation_refusal(service=service, kind="backup_create", actor=None) == ""
    # a failed operation on a service terminated since cannot be retried
    gone = make(customer, node, "gone-retry.example", state="active")
    op = services.operation_start(service=gone, kind="dns_records", params={})
    Operation.objects.filter(pk=op.pk).update(state="failed")
    Service.objects.filter(pk=gone.pk).update(state="terminated")
    with pytest.raises(ProvisioningRefused) as refused:
        services.operation_retry(operation=Operation.objects.get(pk=op.pk))
    assert refused.value.code == "state"


def test_every_state_has_a_line_in_the_table() -> None:
    assert set(guards.RULES) == set(Service.State.values)


# --- tokens -----------------------------------------------------------------------------------


def _post(client: Client, token: str, path: str, body: object):
    return client.post(
        path, body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def test_a_teammates_token_dies_with_the_membership(
    client: Client, customer, owner, teammate, node
) -> None:
    service = make(customer, node, "team.example")
    token = api_token_create(customer=customer, user=teammate, name="t", scope="write").secret
    path = f"/api/v1/services/{service.pk}/mailboxes/"
    body = {"local_part": "info", "password": "p" * 16}
    assert _post(client, token, path, body).status_code == 202
    Operation.objects.update(state="completed")
    # when the teammate is removed from the customer
    Membership.objects.filter(customer=customer, user=teammate).delete()
    # then the token is refused, for reads and writes
    assert _post(client, token, path, body).status_code == 401
    response = client.get("/api/v1/services/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert Operation.objects.filter(service=service).count() == 1


def test_tokens_cannot_write_to_terminated_or_suspended_or_others_services(
    client: Client, customer, owner, node
) -> None:
    token = api_token_create(customer=customer, user=owner, name="w", scope="write").secret
    body = {"replace": [{"name": "@", "type": "TXT", "contents": ['"hello"']}]}
    for state in ("terminated", "suspended"):
        service = make(customer, node, f"{state}-tok.example", state=state)
        response = _post(client, token, f"/api/v1/services/{service.pk}/dns-records/", body)
        assert response.status_code == 409, response.content
        assert state in response.json()["error"]["message"]
    # a service handed to another customer is no longer the token's
    moved = make(customer, node, "moved-tok.example")
    Service.objects.filter(pk=moved.pk).update(customer=CustomerFactory.create())
    assert (
        _post(client, token, f"/api/v1/services/{moved.pk}/dns-records/", body).status_code == 404
    )
    assert not Operation.objects.exists()


def test_resource_services_refuse_a_terminated_service(node, customer, owner) -> None:
    service = make(customer, node, "dead.example", state="terminated")
    with pytest.raises(ProvisioningRefused):
        resources.mailbox_create(service=service, local_part="info", password="p" * 16, actor=owner)
    with pytest.raises(ProvisioningRefused):
        resources.backup_create(service=service)
    assert not Operation.objects.exists()
