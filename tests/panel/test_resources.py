"""DNS records, mailboxes and databases from the service page, through the resource services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning.models import Operation
from tests.panel.conftest import make_operation, make_service

pytestmark = pytest.mark.django_db


def post(client, service, action, **data):
    return client.post(reverse("panel:resource_action", args=[service.pk, action]), data)


def test_adding_a_dns_record_starts_an_operation(client, owner, customer, plan, node):
    # given an active service
    service = make_service(customer, plan, node, domain="dns.example.com")
    client.force_login(owner)
    # when the owner adds an A record for www
    response = post(client, service, "dns-add", name="www", rtype="A", content="192.0.2.7", ttl=600)
    # then a dns_records operation carries the validated record and the page shows progress
    assert response.status_code == 302
    op = Operation.objects.get(service=service, kind="dns_records")
    assert op.params["replace"] == [
        {"name": "www.dns.example.com.", "type": "A", "ttl": 600, "contents": ["192.0.2.7"]}
    ]
    assert op.actor == owner
    page = client.get(response["Location"]).content.decode()
    assert "Updating DNS records" in page and "Saving the DNS records" in page


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        (
            {"name": "bad name!", "rtype": "A", "content": "192.0.2.1", "ttl": 600},
            "name",
            "valid record name",
        ),
        (
            {"name": "www", "rtype": "MX", "content": "no priority", "ttl": 600},
            "content",
            "not valid MX data",
        ),
        (
            {"name": "www", "rtype": "A", "content": "192.0.2.1", "ttl": 5},
            "ttl",
            "greater than or equal to 60",
        ),
    ],
)
def test_bad_dns_input_is_shown_next_to_its_field(
    client, owner, customer, plan, node, data, field, text
):
    service = make_service(customer, plan, node, domain="dns.example.com")
    client.force_login(owner)
    response = post(client, service, "dns-add", **data)
    assert response.status_code == 400
    body = response.content.decode()
    errors = body[body.index(f'id="id_{field}-errors"') :][:400]
    assert text in errors
    assert not Operation.objects.filter(kind="dns_records").exists()


def test_mailbox_with_a_bad_name_is_refused_next_to_the_field(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, domain="mail.example.com")
    client.force_login(owner)
    response = post(
        client,
        service,
        "mailbox-add",
        local_part="no spaces",
        password="a long password",
        quota_mb=100,
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_local_part-errors"' in body
    assert not Operation.objects.filter(kind="mailbox_create").exists()
    # and the password typed is never sent back into the page
    assert "a long password" not in body


def test_completed_operations_list_records_mailboxes_and_databases(
    client, owner, customer, plan, node
):
    # given completed resource operations, one mailbox later deleted
    service = make_service(customer, plan, node, domain="res.example.com")
    rec = {"name": "www.res.example.com.", "type": "A", "ttl": 600, "contents": ["192.0.2.9"]}
    make_operation(service, kind="dns_records", params={"replace": [rec], "delete": []})
    make_operation(
        service, kind="mailbox_create", params={"address": "a@res.example.com", "quota_mb": 50}
    )
    make_operation(
        service, kind="mailbox_create", params={"address": "b@res.example.com", "quota_mb": 50}
    )
    make_operation(service, kind="mailbox_delete", params={"address": "b@res.example.com"})
    make_operation(
        service,
        kind="database_create",
        params={"name": f"{service.username}_shop", "user": f"{service.username}_shop"},
    )
    make_operation(
        service,
        kind="mailbox_create",
        state="rolled_back",
        params={"address": "c@res.example.com", "quota_mb": 5},
    )
    client.force_login(owner)
    # when the service page is shown
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    # then what exists is listed, what was deleted or never made is not
    assert "192.0.2.9" in body
    assert "a@res.example.com" in body
    assert "b@res.example.com" not in body and "c@res.example.com" not in body
    assert f"{service.username}_shop" in body


def test_no_resource_changes_while_suspended(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, state="suspended")
    client.force_login(owner)
    response = post(client, service, "dns-add", name="www", rtype="A", content="192.0.2.7", ttl=600)
    assert response.status_code == 400
    assert not Operation.objects.filter(service=service).exists()
