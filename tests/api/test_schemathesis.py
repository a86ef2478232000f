"""Schemathesis generates requests from the OpenAPI schema; none may cause a server error."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet

from api.models import ProvisioningClient
from api.services import api_token_create, provisioning_key_issue
from provisioning.models import Node
from tests.api.helpers import SignedClient
from tests.factories import PlanFactory


def load_schema() -> Any:
    document = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(json.dumps(document, default=str)))


# Django is set up by pytest-django before collection; building the schema needs no database.
schema = load_schema()


@pytest.fixture
def callers(db: None, owner: Any, customer: Any) -> dict[str, Any]:
    Node.objects.create(name="web1", address="127.0.0.1", roles=["web"])
    PlanFactory.create(slug="starter")
    issued = provisioning_key_issue(client=ProvisioningClient.objects.create(name="fuzz"))
    token = api_token_create(customer=customer, user=owner, name="fuzz", scope="write").secret
    return {"signed": SignedClient(Client(), issued.public, issued.secret), "token": token}


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)  # fmt: skip
def test_no_request_from_the_schema_causes_a_server_error(case: Any, callers: Any) -> None:
    path = case.formatted_path
    if case.query:
        path = f"{path}?{urlencode(case.query, doseq=True)}"
    has_body = case.body is not None and not isinstance(case.body, NotSet)
    body = b""
    if has_body and case.method != "GET":
        body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    signed: SignedClient = callers["signed"]
    if "/provisioning/" in path:
        headers = signed.headers(case.method, path, body)
    else:
        headers = {"Authorization": f"Bearer {callers['token']}"}
    response = signed.client.generic(
        case.method, path, body, content_type="application/json", headers=headers
    )
    assert response.status_code < 500, (case.method, path, body, response.content[:500])
    if response.status_code >= 400 and response["Content-Type"].startswith("application/json"):
        assert set(response.json()) == {"error"}, response.content
