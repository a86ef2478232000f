"""Changing DNS records, databases and mailboxes through the customer API."""

from __future__ import annotations

import pytest
from django.test import Client

from api.services import api_token_create
from provisioning.models import Node, Operation, Service
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(customer) -> Service:
    node = Node.objects.create(name="web1", address="127.0.0.1", roles=["web"])
    return Service.objects.create(
        customer=customer, plan=PlanFactory.create(databases=3, mailboxes=3), node=node,
        domain="res-api.example", username="resapi", state="active",
    )  # fmt: skip


def post(client: Client, token: str, path: str, body: object):
    return client.post(
        path, body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def test_valid_changes_queue_operations_and_bad_ones_queue_nothing(
    client: Client, owner, customer, service
) -> None:
    token = api_token_create(customer=customer, user=owner, name="w", scope="write").secret
    base = f"/api/v1/services/{service.pk}"
    # A valid record set is queued as an operation, at once
    ok = post(client, token, f"{base}/dns-records/",
              {"replace": [{"name": "shop", "type": "A", "contents": ["192.0.2.10"]}]})  # fmt: skip
    assert ok.status_code == 202, ok.content
    assert ok.json()["kind"] == "dns_records"
    assert ok.json()["state"] == "queued"
    # Bad record data, a hostile database name, a short password: refused before anything
    bad = [
        (f"{base}/dns-records/", {"replace": [{"name": "x", "type": "A", "contents": ["1.2.3"]}]}),
        (f"{base}/databases/", {"name": "shop;drop", "user": "shop", "password": "p" * 16}),
        (f"{base}/databases/", {"name": "shop", "user": "shop", "password": "short"}),
        (f"{base}/mailboxes/", {"local_part": "../root", "password": "p" * 16}),
        (f"{base}/mailboxes/delete/", {"address": "info@someone-else.example"}),
    ]
    for path, body in bad:
        response = post(client, token, path, body)
        assert response.status_code in (400, 409), (path, body, response.content)
        assert set(response.json()) == {"error"}
    assert Operation.objects.filter(service=service).count() == 1


def test_read_tokens_and_strangers_cannot_change_anything(
    client: Client, owner, customer, stranger, service
) -> None:
    read = api_token_create(customer=customer, user=owner, name="r").secret
    other = api_token_create(
        customer=stranger.customers.get(), user=stranger, name="s", scope="write"
    ).secret
    body = {"local_part": "info", "password": "p" * 16}
    assert post(client, read, f"/api/v1/services/{service.pk}/mailboxes/", body).status_code == 403
    assert post(client, other, f"/api/v1/services/{service.pk}/mailboxes/", body).status_code == 404
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"delete": [["@", "NS"]]},
        {"delete": [["@", "SOA"]]},
        {"delete": [["res-api.example.", "ns"]]},
        {"delete": [["www", "A"], ["@", "SOA"]]},
        {"replace": [{"name": "@", "type": "NS", "contents": ["ns.evil.example."]}]},
        {"replace": [{"name": "@", "type": "SOA", "contents": ["a. b. 1 2 3 4 5"]}]},
    ],
)
def test_the_zone_apex_ns_and_soa_are_never_the_customers_to_change(
    client: Client, owner, customer, service, body
) -> None:
    # given an owner with a write token
    token = api_token_create(customer=customer, user=owner, name="w", scope="write").secret
    # when they try to delete or replace the zone's SOA or NS
    response = post(client, token, f"/api/v1/services/{service.pk}/dns-records/", body)
    # then it is refused with a reason and nothing is queued
    assert response.status_code == 400, response.content
    if "delete" in body:
        assert "cannot be deleted" in response.json()["error"]["message"]
    assert not Operation.objects.filter(service=service).exists()


def test_the_panel_offers_no_ns_or_soa_to_delete(owner, service) -> None:
    # given the panel's delete form; when NS or SOA is asked for; then no operation starts
    from panel.resources import DnsDeleteForm

    for rtype in ("NS", "SOA"):
        form = DnsDeleteForm(data={"name": "@", "rtype": rtype})
        assert not form.is_valid()
        assert "rtype" in form.errors
        # and the service behind the form refuses it even when a form lets it through
        form.cleaned_data = {"name": "@", "rtype": rtype}
        assert form.save(service=service, actor=owner) is None
        assert "cannot be deleted" in str(form.errors)
    assert not Operation.objects.filter(service=service).exists()
