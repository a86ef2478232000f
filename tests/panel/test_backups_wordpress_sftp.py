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
    # the form answers with a redirect (reloading the page never posts it again)
    response = post(client, service, "wordpress-add", title="My Shop", admin_user="shopadmin",
                    admin_email="owner@example.com")  # fmt: skip
    assert response.status_code == 302
    shown = client.get(response["Location"])
    assert shown["Cache-Control"] == "no-store"
    password = shown.context["wordpress_password"]
    assert len(password) >= 16
    assert password in shown.content.decode()
    op = Operation.objects.get(service=service, kind="wordpress_install")
    assert password not in str(op.params)
    # Reloading the page does not show it again
    again = client.get(reverse("panel:service", args=[service.pk]))
    assert password not in again.content.decode()
    assert "no-store" not in again.get("Cache-Control", "")


def test_the_same_request_again_while_it_runs_is_refused_and_never_queued_twice(
    client, owner, customer, plan, node
) -> None:
    # given a WordPress install under way
    service = make_service(customer, plan, node, domain="twice.example.com")
    client.force_login(owner)
    data = {"title": "Shop", "admin_user": "shopadmin", "admin_email": "owner@example.com"}
    assert post(client, service, "wordpress-add", **data).status_code == 302

    # when the form is sent again (a resubmitted page, a script) while it runs
    again = post(client, service, "wordpress-add", **data)

    # then it is refused in words, and there is still one operation
    assert again.status_code == 400
    errors = again.context["wordpress_form"].non_field_errors()
    assert "already under way" in errors[0] and "not started a second time" in errors[0]
    assert Operation.objects.filter(service=service, kind="wordpress_install").count() == 1


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
