"""The provisioning API end to end: the create call answers at once, the node does the rest."""

from __future__ import annotations

import pytest
from django.test import Client

from api.models import ProvisioningClient
from api.services import provisioning_key_issue
from provisioning.models import Operation, Service, StepRun
from tests.api.helpers import SignedClient
from tests.factories import PlanFactory
from tests.node.harness import (
    KEY_DIR,
    http_get,
    node_leftovers,
    unique_domain,
    wait_for_operation,
)

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_create_returns_before_provisioning_and_completes_on_the_node(
    worker, hosting_node, client: Client
) -> None:
    # Given an outside billing system with a key, and a plan
    PlanFactory.create(slug="api-e2e")
    domain = unique_domain("api-e2e")
    issued = provisioning_key_issue(client=ProvisioningClient.objects.create(name="whmcs"))
    billing = SignedClient(client, issued.public, issued.secret)
    # When it orders an account
    response = billing.post(
        "/api/v1/provisioning/accounts",
        {"plan": "api-e2e", "domain": domain,
         "customer": {"name": "Ana Api", "email": "ana@example.com", "country": "PT"}},
    )  # fmt: skip
    # Then the answer is immediate: the operation is only queued, no step has touched the node
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["operation"]["state"] == "queued"
    assert body["service"]["state"] == "pending"
    operation = Operation.objects.get(pk=body["operation"]["id"])
    # (the worker may pick it up any moment now; what matters is the answer did not wait)
    # And the operation then completes on the real node, readable through the API
    operation = wait_for_operation(operation)
    assert operation.state == Operation.State.COMPLETED, operation.reason
    read = billing.get(body["operation"]["url"]).json()
    assert read["state"] == "completed"
    assert {step["step"] for step in read["steps"]} >= {"linux_user", "php_pool", "nginx_site"}
    assert StepRun.objects.filter(operation=operation, status="succeeded").exists()
    assert http_get(domain)[0] == 200
    # And the worker's log lines about it name the operation and the service
    log = (KEY_DIR / "worker.log").read_text()
    assert f"operation_id={operation.pk}" in log
    assert f"service_id={body['service']['id']}" in log
    # When the billing system terminates it, the node is left with nothing of it
    service = Service.objects.get(pk=body["service"]["id"])
    ended = billing.post(f"/api/v1/provisioning/services/{service.pk}/terminate", {})
    assert ended.status_code == 202
    terminate = wait_for_operation(Operation.objects.get(pk=ended.json()["operation"]["id"]))
    assert terminate.state == Operation.State.COMPLETED, terminate.reason
    assert node_leftovers(service.username) == []
