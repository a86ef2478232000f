"""The customer API: personal tokens, scoped to the token's customer."""

from __future__ import annotations

import pytest
from django.test import Client

from api.models import ApiToken
from api.services import api_token_create, api_token_revoke
from provisioning.models import Service
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db


def make_service(customer, domain: str) -> Service:
    return Service.objects.create(
        customer=customer,
        plan=PlanFactory.create(),
        domain=domain,
        username=domain.split(".")[0][:8],
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def owner_token(owner, customer) -> str:
    return api_token_create(customer=customer, user=owner, name="ci").secret


def test_owner_token_lists_only_its_customers_services(
    client: Client, owner_token: str, customer, stranger
) -> None:
    # Given a service of the owner's customer and one of a stranger's
    mine = make_service(customer, "mine.example.com")
    theirs = make_service(stranger.customers.get(), "theirs.example.com")
    # When the owner's token lists services
    response = client.get("/api/v1/services/", headers=bearer(owner_token))
    # Then only the owner's appear
    assert response.status_code == 200
    assert [row["domain"] for row in response.json()["results"]] == ["mine.example.com"]
    assert (
        client.get(f"/api/v1/services/{mine.pk}/", headers=bearer(owner_token)).status_code == 200
    )
    # And the stranger's service is a 404, not a 403: its existence is not revealed
    other = client.get(f"/api/v1/services/{theirs.pk}/", headers=bearer(owner_token))
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"


def test_teammate_session_sees_the_customers_services(client: Client, teammate, customer) -> None:
    make_service(customer, "team.example.com")
    client.force_login(teammate)
    response = client.get("/api/v1/services/")
    assert [row["domain"] for row in response.json()["results"]] == ["team.example.com"]


def test_anonymous_and_bad_tokens_are_refused(client: Client, owner_token: str) -> None:
    assert client.get("/api/v1/services/").status_code in (401, 403)
    bad = client.get("/api/v1/services/", headers=bearer(owner_token[:-2] + "zz"))
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "token_invalid"
    malformed = client.get("/api/v1/services/", headers=bearer("hunter2"))
    assert malformed.status_code == 401


def test_a_revoked_token_stops_working_at_once(client: Client, owner, owner_token: str) -> None:
    assert client.get("/api/v1/services/", headers=bearer(owner_token)).status_code == 200
    api_token_revoke(token=ApiToken.objects.get(), actor=owner)
    response = client.get("/api/v1/services/", headers=bearer(owner_token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"


def test_operations_of_another_customer_are_404(client: Client, owner_token: str, stranger) -> None:
    from provisioning.models import Operation

    theirs = make_service(stranger.customers.get(), "theirs.example.com")
    op = Operation.objects.create(service=theirs, kind="create")
    assert (
        client.get(f"/api/v1/operations/{op.pk}/", headers=bearer(owner_token)).status_code == 404
    )
    assert client.get("/api/v1/operations/", headers=bearer(owner_token)).json()["results"] == []


def test_tokens_are_created_and_revoked_in_the_panel(client: Client, owner, stranger) -> None:
    client.force_login(owner)
    page = client.post("/account/tokens/", {"name": "deploy", "scope": "write"})
    assert page.status_code == 200
    token = page.context["new_token"]
    assert token.startswith("hw_")
    stored = ApiToken.objects.get()
    assert token not in (stored.secret_hash, stored.prefix)  # only a hash is kept
    assert client.get("/api/v1/services/", headers=bearer(token)).status_code == 200
    # A stranger cannot revoke it
    other = Client()
    other.force_login(stranger)
    assert other.post(f"/account/tokens/{stored.pk}/revoke").status_code == 404
    # The owner can
    assert client.post(f"/account/tokens/{stored.pk}/revoke").status_code == 302
    assert Client().get("/api/v1/services/", headers=bearer(token)).status_code == 401


def test_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/provisioning/accounts" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_a_failed_operation_reads_in_the_customers_words(
    client: Client, owner_token: str, customer
) -> None:
    from provisioning.models import Operation, StepRun

    # given a WordPress install rolled back because the site had other files
    service = make_service(customer, "words.example.com")
    op = Operation.objects.create(
        service=service,
        kind="wordpress_install",
        state="rolled_back",
        reason="Public_html has files other than the default index.html (shop.php): move or "
        "delete them, then install WordPress again. Everything it had done was undone.",
        error="Step wordpress failed: ... (`bash -c set -euo pipefail\ncd /home/x` exited with 3)",
    )
    StepRun.objects.create(
        operation=op,
        position=0,
        step="wordpress",
        status="failed",
        error="public_html has files ... (`bash -c set -euo pipefail ...` exited with 3)",
    )

    # when the customer reads it through the API
    body = client.get(f"/api/v1/operations/{op.pk}/", headers=bearer(owner_token)).json()

    # then the reason says what blocks the install, and no command or script is in the answer
    assert "other than the default index.html (shop.php)" in body["reason"]
    assert body["steps"][0]["status"] == "failed"
    assert "bash" not in str(body) and "exited with" not in str(body)
