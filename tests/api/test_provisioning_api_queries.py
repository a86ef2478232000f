"""The provisioning API's create call stays within a fixed number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditLog
from api.models import ProvisioningClient
from api.services import provisioning_key_issue
from provisioning.models import Node, Operation, Service
from tests.api.helpers import SignedClient
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db(transaction=True)
CREATE = "/api/v1/provisioning/accounts"
# 39 before the nonce, key and savepoint round trips were cut, 32 after; the start guards
# (provisioning/guards.py) read two rows more (34). 25 since the call is one transaction (the
# nonce spent with ON CONFLICT DO NOTHING), service_order holds one savepoint instead of four,
# the new service's create operation is written without locking the service again or looking
# for a running operation, its two audit rows go in one INSERT, and the operation is read
# again neither for the response nor for queueing. The aim is 12.
MAX_QUERIES = 25


@pytest.fixture
def signed(client: Client) -> SignedClient:
    issued = provisioning_key_issue(client=ProvisioningClient.objects.create(name="acme-billing"))
    return SignedClient(client, issued.public, issued.secret)


def order(signed: SignedClient, n: int):
    return signed.post(
        CREATE,
        {
            "plan": "starter",
            "domain": f"shop{n}-example.com",
            "customer": {"name": f"Mia {n}", "email": f"mia{n}@example.com", "country": "DE"},
        },
    )


def test_create_for_a_new_customer_stays_within_its_query_budget(signed: SignedClient) -> None:
    Node.objects.create(name="web1", address="127.0.0.1", roles=["web"])
    PlanFactory.create(slug="starter")
    order(signed, 0)  # the first request warms per-process caches (content types, ...)
    with CaptureQueriesContext(connection) as queries:
        response = order(signed, 1)
    assert response.status_code == 202, response.content
    listing = "\n".join(q["sql"][:160] for q in queries.captured_queries)
    assert len(queries) <= MAX_QUERIES, f"{len(queries)} queries:\n{listing}"
    # Everything the call promises was written: service, queued operation, audit rows.
    service = Service.objects.get(domain="shop1-example.com")
    operation = Operation.objects.get(service=service)
    assert operation.state == "queued"
    assert AuditLog.objects.filter(
        action="provisioning.service.ordered", customer=service.customer
    ).exists()
    assert AuditLog.objects.filter(action="provisioning.operation.create").count() == 2
