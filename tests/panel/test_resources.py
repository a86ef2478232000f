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
    errors = body[body.index(f'id="id_dns_{field}-errors"') :][:400]
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
    assert 'id="id_mailbox_local_part-errors"' in body
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


def test_mail_settings_shown_are_the_ones_the_node_serves(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, domain="clients.example.com")
    client.force_login(owner)
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    # the server name the node's certificate is made for, with each port and its TLS mode
    assert f"<code>mail.{node.name}</code>" in body
    for port, mode in (("993", "SSL/TLS"), ("143", "STARTTLS"), ("465", "SSL/TLS")):
        assert f"<td>{port}</td><td>{mode}</td>" in body
    assert "<td>587</td><td>STARTTLS</td>" in body and "<td>995</td><td>SSL/TLS</td>" in body
    assert f"https://mail.{node.name}/" in body
    # and no longer a name nothing serves a certificate for
    assert "IMAP and SMTP server: <code>mail.clients.example.com</code>" not in body
    assert f"{plan.mail_per_hour} messages an hour" in body


def test_mailbox_management_starts_operations_with_checked_params(
    client, owner, customer, plan, node
):
    service = make_service(customer, plan, node, domain="box.example.com")
    client.force_login(owner)
    address = "info@box.example.com"

    def started(kind: str) -> Operation:
        # one operation runs at a time: let it finish before the next change
        op = Operation.objects.get(service=service, kind=kind)
        Operation.objects.filter(pk=op.pk).update(state=Operation.State.COMPLETED)
        return op

    assert post(client, service, "mailbox-quota", address=address, quota_mb=250).status_code == 302
    op = started("mailbox_quota")
    assert op.params == {"address": address, "quota_mb": 250}

    assert post(client, service, "mailbox-password", address=address, password="a new secret!")
    op = started("mailbox_password")
    assert op.params["password_hash"].startswith("{BLF-CRYPT}$2")
    assert "a new secret!" not in str(op.params)

    post(
        client,
        service,
        "mailbox-autoreply",
        address=address,
        enabled="on",
        subject="Away",
        body="Back on Monday",
        days=2,
    )
    op = started("mail_autoreply")
    assert op.params == {
        "address": address,
        "enabled": True,
        "subject": "Away",
        "body": "Back on Monday",
        "days": 2,
    }

    post(client, service, "forwarder-add", local_part="sales", targets="a@x.example, b@y.example")
    op = started("forwarder_set")
    assert op.params == {
        "source": "sales@box.example.com",
        "targets": ["a@x.example", "b@y.example"],
    }

    post(client, service, "mail-catchall", target=address)
    assert started("mail_catchall").params == {"target": address}

    post(client, service, "mail-dmarc", policy="quarantine")
    op = started("dns_records")
    [record] = op.params["replace"]
    assert record["name"] == "_dmarc.box.example.com."
    assert record["contents"] == [
        '"v=DMARC1; p=quarantine; rua=mailto:postmaster@box.example.com; adkim=r; aspf=r"'
    ]

    post(client, service, "mail-dkim-rotate")
    assert started("dkim_rotate").params == {}


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("mailbox-quota", {"address": "info@other.example", "quota_mb": 10}),
        ("mailbox-quota", {"address": "info@box.example.com", "quota_mb": 0}),
        ("mailbox-autoreply", {"address": "info@box.example.com", "enabled": "on", "days": 1}),
        ("mailbox-password", {"address": "info@box.example.com", "password": "short"}),
        ("forwarder-add", {"local_part": "../x", "targets": "a@x.example"}),
        ("forwarder-add", {"local_part": "sales", "targets": "not-an-address"}),
        ("mail-catchall", {"target": "nobody"}),
        ("mail-dmarc", {"policy": "none; rua=mailto:x@evil.example"}),
    ],
)
def test_bad_mail_changes_start_nothing(client, owner, customer, plan, node, action, data):
    service = make_service(customer, plan, node, domain="box.example.com")
    client.force_login(owner)
    response = post(client, service, action, **data)
    assert response.status_code in (302, 400)
    assert not Operation.objects.filter(service=service).exists()


def test_mail_state_is_listed_from_completed_operations(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, domain="st.example.com")
    a = "a@st.example.com"
    make_operation(service, kind="mailbox_create", params={"address": a, "quota_mb": 50})
    make_operation(service, kind="mailbox_quota", params={"address": a, "quota_mb": 75})
    make_operation(
        service, kind="forwarder_set", params={"source": "s@st.example.com", "targets": [a]}
    )
    make_operation(service, kind="mail_catchall", params={"target": a})
    make_operation(service, kind="mail_autoreply", params={"address": a, "enabled": True})
    rotate = make_operation(service, kind="dkim_rotate", params={})
    dmarc = '"v=DMARC1; p=reject; rua=mailto:postmaster@st.example.com"'
    rec = {"name": "_dmarc.st.example.com.", "type": "TXT", "ttl": 3600, "contents": [dmarc]}
    make_operation(service, kind="dns_records", params={"replace": [rec], "delete": []})
    client.force_login(owner)
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    assert "75 MB · auto-reply on · catch-all" in body
    assert "s@st.example.com" in body
    assert f"hw{rotate.pk}._domainkey.st.example.com" in body
    assert '<option value="reject" selected>' in body
