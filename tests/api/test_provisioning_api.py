"""The HMAC-signed provisioning API, as an outside billing system uses it."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiNonce, ProvisioningClient, ProvisioningClientKey
from api.services import provisioning_key_issue
from provisioning.models import Node, Operation, Service
from tests.api.helpers import SignedClient
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db
CREATE = "/api/v1/provisioning/accounts"


@pytest.fixture
def billing_system() -> ProvisioningClient:
    return ProvisioningClient.objects.create(name="acme-billing")


@pytest.fixture
def signed(client: Client, billing_system: ProvisioningClient) -> SignedClient:
    issued = provisioning_key_issue(client=billing_system)
    return SignedClient(client, issued.public, issued.secret)


@pytest.fixture
def plan():
    Node.objects.create(name="web1", address="127.0.0.1", roles=["web"])
    return PlanFactory.create(slug="starter")


def new_account(**overrides):
    body = {
        "plan": "starter",
        "domain": "shop-example.com",
        "customer": {"name": "Mia Muster", "email": "mia@example.com", "country": "DE"},
    }
    body.update(overrides)
    return body


def error(response) -> dict:
    return response.json()["error"]


def test_create_returns_at_once_with_a_queued_operation(signed: SignedClient, plan) -> None:
    # When the billing system orders an account for a new customer
    response = signed.post(CREATE, new_account())
    # Then the answer comes before any provisioning: 202 with the operation to follow
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["service"]["domain"] == "shop-example.com"
    assert body["service"]["state"] == "pending"
    assert body["service"]["plan"] == "starter"
    assert body["operation"]["kind"] == "create"
    assert body["operation"]["state"] == "queued"
    service = Service.objects.get(pk=body["service"]["id"])
    assert service.customer.memberships.get().user.email == "mia@example.com"
    # And the operation can be read back, signed
    op = signed.get(body["operation"]["url"])
    assert op.status_code == 200
    assert op.json()["id"] == body["operation"]["id"]
    assert op.json()["steps"] == []


def test_create_for_an_existing_customer_by_id(signed: SignedClient, plan) -> None:
    customer = CustomerFactory.create()
    response = signed.post(
        CREATE, {"plan": "starter", "domain": "second.example.org", "customer_id": customer.pk}
    )
    assert response.status_code == 202
    assert Service.objects.get().customer == customer


def test_a_forged_signature_is_refused_and_changes_nothing(signed: SignedClient, plan) -> None:
    response = signed.post(CREATE, new_account(), secret="not-the-secret")
    assert response.status_code == 401
    assert error(response)["code"] == "signature_invalid"
    assert not Service.objects.exists()
    # A forged request does not use up its nonce either
    assert not ApiNonce.objects.exists()


def test_a_body_changed_after_signing_is_refused(signed: SignedClient, plan) -> None:
    body = json.dumps(new_account()).encode()
    headers = signed.headers("POST", CREATE, body)
    tampered = body.replace(b"shop-example.com", b"evil-example.com")
    response = signed.client.generic(
        "POST", CREATE, tampered, content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert error(response)["code"] == "signature_invalid"
    assert not Service.objects.exists()


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_stale_timestamp_is_refused(signed: SignedClient, plan, skew: int) -> None:
    response = signed.post(CREATE, new_account(), timestamp=int(time.time()) + skew)
    assert response.status_code == 401
    assert error(response)["code"] == "timestamp_stale"
    assert "300 s" in error(response)["message"]
    assert not Service.objects.exists()


def test_a_replayed_nonce_is_refused(signed: SignedClient, plan) -> None:
    # Given a request that went through
    body = json.dumps(new_account()).encode()
    headers = signed.headers("POST", CREATE, body, nonce="n" * 24)
    first = signed.client.generic(
        "POST", CREATE, body, content_type="application/json", headers=headers
    )
    assert first.status_code == 202
    # When the very same request is sent again (a replay)
    again = signed.client.generic(
        "POST", CREATE, body, content_type="application/json", headers=headers
    )
    # Then it is refused and there is still one service
    assert again.status_code == 401
    assert error(again)["code"] == "nonce_replayed"
    assert Service.objects.count() == 1


def test_missing_headers_and_unknown_keys(signed: SignedClient, client: Client, plan) -> None:
    anonymous = client.post(CREATE, new_account(), content_type="application/json")
    assert anonymous.status_code in (401, 403)
    assert "code" in error(anonymous)
    unknown = SignedClient(client, "hwk_doesnotexist", "whatever").post(CREATE, new_account())
    assert unknown.status_code == 401
    assert error(unknown)["code"] == "key_invalid"
    assert not Service.objects.exists()


def test_key_rotation_keeps_the_old_key_for_the_grace_period_only(
    client: Client, billing_system: ProvisioningClient, plan
) -> None:
    # Given a client with a key in use
    old = provisioning_key_issue(client=billing_system)
    old_client = SignedClient(client, old.public, old.secret)
    assert old_client.get("/api/v1/provisioning/operations/999999").status_code == 404
    # When a new key is issued with a one-hour grace for the old one
    new = provisioning_key_issue(client=billing_system, retire_others_after=timedelta(hours=1))
    new_client = SignedClient(client, new.public, new.secret)
    # Then both work during the grace period
    assert old_client.get("/api/v1/provisioning/operations/999999").status_code == 404
    assert new_client.get("/api/v1/provisioning/operations/999999").status_code == 404
    # And after it the old key is refused
    ProvisioningClientKey.objects.filter(key_id=old.public).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = old_client.get("/api/v1/provisioning/operations/999999")
    assert expired.status_code == 401
    assert error(expired)["code"] == "key_invalid"
    assert new_client.get("/api/v1/provisioning/operations/999999").status_code == 404


def test_unknown_fields_and_malformed_bodies_are_refused(signed: SignedClient, plan) -> None:
    typo = signed.post(CREATE, new_account(domian="x.example.com"))
    assert typo.status_code == 400
    assert error(typo)["code"] == "unknown_field"
    assert "domian" in error(typo)["fields"]
    path = CREATE
    body = b'{"plan": "starter", '
    broken = signed.client.generic(
        "POST",
        path,
        body,
        content_type="application/json",
        headers=signed.headers("POST", path, body),
    )
    assert broken.status_code == 400
    assert error(broken)["code"] == "parse_error"
    both = signed.post(CREATE, new_account(customer_id=1))
    assert both.status_code == 400
    assert "either customer_id or customer" in error(both)["message"]
    assert not Service.objects.exists()


@pytest.mark.parametrize(
    "domain", ["bad domain.com", "evil.com;rm -rf /", "a" * 64 + ".com", "../etc/passwd", "x\n.com"]
)
def test_hostile_domains_are_refused_before_anything_is_queued(
    signed: SignedClient, plan, domain: str
) -> None:
    response = signed.post(CREATE, new_account(domain=domain))
    assert response.status_code == 400
    assert error(response)["code"] == "invalid"
    assert not Service.objects.exists()
    assert not Operation.objects.exists()


def test_a_refused_request_leaves_nothing_but_still_uses_its_nonce(
    signed: SignedClient, plan
) -> None:
    # Given a request for a new customer that is refused after the customer was built
    # (the domain is invalid), it leaves no customer, no user and no service behind
    from accounts.models import Customer, User

    body = json.dumps(new_account(domain="bad domain.example")).encode()
    headers = signed.headers("POST", CREATE, body, nonce="r" * 20)
    first = signed.client.generic(
        "POST", CREATE, body, content_type="application/json", headers=headers
    )
    assert first.status_code == 400
    assert not Customer.objects.exists()
    assert not User.objects.exists()
    # And its nonce is spent: the same signed request cannot come back later
    again = signed.client.generic(
        "POST", CREATE, body, content_type="application/json", headers=headers
    )
    assert again.status_code == 401
    assert error(again)["code"] == "nonce_replayed"


def test_unknown_plan_and_customer_are_404(signed: SignedClient, plan) -> None:
    response = signed.post(CREATE, new_account(plan="platinum"))
    assert response.status_code == 404
    assert error(response)["code"] == "plan_not_found"
    response = signed.post(
        CREATE, {"plan": "starter", "domain": "x.example.com", "customer_id": 424242}
    )
    assert response.status_code == 404
    assert error(response)["code"] == "customer_not_found"


def test_a_second_operation_while_one_runs_is_a_conflict(signed: SignedClient, plan) -> None:
    # Given an account whose create operation has not finished
    created = signed.post(CREATE, new_account()).json()
    service_id = created["service"]["id"]
    # When the billing system asks to terminate it before it even exists, it is told why
    early = signed.post(f"/api/v1/provisioning/services/{service_id}/terminate", {})
    assert early.status_code == 409
    assert error(early)["code"] == "invalid_state"
    # When the account is active but an operation still runs on it
    Service.objects.filter(pk=service_id).update(state="active")
    response = signed.post(f"/api/v1/provisioning/services/{service_id}/terminate", {})
    # Then it is told to wait, and no second operation exists
    assert response.status_code == 409
    assert error(response)["code"] == "operation_running"
    assert Operation.objects.filter(service_id=service_id).count() == 1


def test_suspend_needs_a_known_reason(signed: SignedClient, plan) -> None:
    created = signed.post(CREATE, new_account()).json()
    service_id = created["service"]["id"]
    response = signed.post(
        f"/api/v1/provisioning/services/{service_id}/suspend", {"reason": "because"}
    )
    assert response.status_code == 400
    assert "reason" in error(response)["fields"]
