"""The service page lists what the service holds on its node from its ``NodeResource`` rows,
not from the parameters of its old operations."""

from __future__ import annotations

import re

from django.urls import reverse

from provisioning.models import NodeResource
from tests.panel.conftest import make_operation, make_service

KIND = NodeResource.Kind


def test_the_service_page_lists_resources_from_the_rows(client, owner, customer, plan, node):
    # given a service whose rows hold a record set, two databases (one WordPress's), a mailbox
    # and a backup, and rows that are gone (a deleted mailbox, a dropped database)
    service = make_service(customer, plan, node, domain="rows.example.com")
    u = service.username

    def row(kind: str, held: str, state: str = "present", **detail: object) -> None:
        NodeResource.objects.create(
            service=service, node=node, kind=kind, name=held, state=state, detail=detail
        )

    rec: dict[str, object] = {
        "name": "shop.rows.example.com.", "type": "A", "ttl": 600, "contents": ["192.0.2.8"]
    }  # fmt: skip
    NodeResource.objects.create(
        service=service, node=node, kind=KIND.RECORD_SET, name="shop.rows.example.com. A",
        detail=rec,
    )  # fmt: skip
    row(KIND.DATABASE, f"{u}_main")
    row(KIND.DATABASE, f"{u}_shop")
    row(KIND.DATABASE_USER, f"{u}_buyer", databases=[f"{u}_shop"])
    row(KIND.DATABASE, f"{u}_wp", wordpress=True)
    row(KIND.DATABASE, f"{u}_old", state="gone")
    row(KIND.MAILBOX, "info@rows.example.com", quota_mb=75)
    row(KIND.MAILBOX, "gone@rows.example.com", state="gone", quota_mb=5)
    row(KIND.BACKUP, f"{u}/20261201T030000Z", backup_id="20261201T030000Z")
    # and an old operation whose parameters name a mailbox the rows do not hold
    make_operation(
        service, kind="mailbox_create", params={"address": "ghost@rows.example.com", "quota_mb": 5}
    )
    client.force_login(owner)

    # when the owner opens the service page
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()

    # then what the rows hold is listed, under the names MariaDB and the node know
    assert "192.0.2.8" in body
    assert re.findall(r'data-database="([^"]+)"', body) == [f"{u}_main", f"{u}_wp", f"{u}_shop"]
    assert f"{u}_buyer" in body
    assert "info@rows.example.com" in body and "75 MB" in body
    assert "20261201T030000Z" in body
    # and what is gone, or only in an old operation's parameters, is not
    assert "gone@rows.example.com" not in body and f"{u}_old" not in body
    assert "ghost@rows.example.com" not in body
