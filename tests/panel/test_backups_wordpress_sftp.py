"""Backups, WordPress and SFTP from the service page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning.models import Operation
from tests.panel.conftest import make_service

pytestmark = pytest.mark.django_db


def post(client, service, action, **data):
    return client.post(reverse("panel:resource_action", args=[service.pk, action]), data)


def test_back_up_now_and_restore_a_listed_backup(client, owner, customer, plan, node) -> None:
    service = make_service(customer, plan, node, domain="bk.example.com")
    client.force_login(owner)
    # When the owner backs up now, a backup operation with the retention starts
    assert post(client, service, "backup-add").status_code == 302
    op = Operation.objects.get(service=service, kind="backup_create")
    assert op.params["keep"] == 7
    # Once completed, the backup is listed with a restore button
    Operation.objects.filter(pk=op.pk).update(state="completed")
    page = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    assert op.params["backup_id"] in page
    assert "Restore" in page
    # Restoring a made-up or hostile backup id is refused before anything is queued
    response = post(client, service, "backup-restore", backup_id="../../etc")
    assert response.status_code == 302
    assert not Operation.objects.filter(kind="backup_restore").exists()
    assert (
        post(client, service, "backup-restore", backup_id=op.params["backup_id"]).status_code == 302
    )
    restore = Operation.objects.get(kind="backup_restore")
    assert restore.params["backup_id"] == op.params["backup_id"]


def test_wordpress_password_is_shown_once_and_only_its_hash_is_kept(
    client, owner, customer, plan, node
) -> None:
    service = make_service(customer, plan, node, domain="wp.example.com")
    client.force_login(owner)
    response = post(client, service, "wordpress-add", title="My Shop", admin_user="shopadmin",
                    admin_email="owner@example.com")  # fmt: skip
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    password = response.context["wordpress_password"]
    assert len(password) >= 16
    assert password in response.content.decode()
    op = Operation.objects.get(service=service, kind="wordpress_install")
    assert password not in str(op.params)
    # Reloading the page does not show it again
    again = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    assert password not in again


def test_bad_wordpress_and_sftp_input_is_refused_next_to_the_field(
    client, owner, customer, plan, node
) -> None:
    service = make_service(customer, plan, node, domain="wpbad.example.com")
    client.force_login(owner)
    bad_user = post(client, service, "wordpress-add", title="Shop", admin_user="bad user;rm",
                    admin_email="owner@example.com")  # fmt: skip
    assert bad_user.status_code == 400
    assert bad_user.context["wordpress_form"].errors["admin_user"]
    short = post(client, service, "sftp-add", password="short")
    assert short.status_code == 400
    assert short.context["sftp_form"].errors["password"]
    assert not Operation.objects.filter(service=service).exists()
    # A good password turns SFTP on; the page then offers to turn it off
    assert post(client, service, "sftp-add", password="a-long-sftp-secret").status_code == 302
    op = Operation.objects.get(service=service, kind="sftp_enable")
    assert "a-long-sftp-secret" not in str(op.params)
    Operation.objects.filter(pk=op.pk).update(state="completed")
    page = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    assert "Turn SFTP off" in page
    assert "2022" in page
