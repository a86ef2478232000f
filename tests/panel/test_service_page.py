"""The service page and the live progress of its operations."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from panel import selectors
from provisioning.models import StepRun
from tests.panel.conftest import make_operation, make_run, make_service

pytestmark = pytest.mark.django_db


def test_service_page_shows_plan_usage_and_sftp_details(client, owner, customer, plan, node):
    # given an active service with measured disk usage
    service = make_service(customer, plan, node, domain="shop.example.com", disk_used_mb=250)
    client.force_login(owner)
    # when the owner opens its page
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    # then plan, usage against the limit (one number format) and the SFTP login are there
    assert "shop.example.com" in body
    assert "250 MB of 1,000 MB" in body
    assert 'aria-valuenow="25"' in body
    assert service.username in body
    assert "127.0.0.1" in body
    # and what is not measured yet says so, rather than showing a limit with no value
    assert "not measured yet · 256 MB included" in body
    # and the SFTP paths are those the SFTP session shows (one helper decides them)
    webroot = selectors.sftp_path(service=service, home_relative="public_html")
    assert f"<code>{webroot}</code>" in body and webroot.endswith("/public_html")
    # and the domain wraps after its dots only
    assert "shop.<wbr>example.<wbr>com" in body
    # and every id on the page is unique (each label points at its own form's field)
    ids = re.findall(r'\sid="([^"]+)"', body)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_the_databases_box_lists_every_database_under_its_real_name(
    client, owner, customer, plan, node
):
    # given an account with WordPress installed and a database the customer created
    service = make_service(customer, plan, node, domain="dbs.example.com")
    make_operation(service, kind="wordpress_install", state="completed", params={"name": "wp"})
    make_operation(
        service, kind="database_create", state="completed", params={"name": "shop", "user": "shop"}
    )
    client.force_login(owner)

    # when the owner opens the service page
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()

    # then the main, WordPress and own databases are listed as MariaDB knows them
    u = service.username
    listed = re.findall(r'data-database="([^"]+)"', body)
    assert listed == [f"{u}_main", f"{u}_wp", f"{u}_shop"]
    # and only the customer's own database can be deleted from here
    assert body.count("Delete database") == 1 and 'value="shop"' in body


def test_teammate_sees_the_service_too(client, teammate, customer, plan, node):
    service = make_service(customer, plan, node)
    client.force_login(teammate)
    assert client.get(reverse("panel:service", args=[service.pk])).status_code == 200


def test_running_operation_polls_and_lists_its_steps(client, owner, customer, plan, node):
    # given a create operation with two steps done and the third running
    service = make_service(customer, plan, node, state="pending")
    op = make_operation(service, state="provisioning")
    make_run(op, "validate", StepRun.Status.SUCCEEDED)
    make_run(op, "linux_user", StepRun.Status.SUCCEEDED, position=1)
    make_run(op, "limits", StepRun.Status.RUNNING, position=2)
    client.force_login(owner)
    url = reverse("panel:operation_progress", args=[service.pk, op.pk])
    # when the partial is fetched
    body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    # then it polls itself every second and shows where each step stands
    assert 'hx-trigger="every 1s"' in body and url in body
    assert body.count("step step-done") == 2
    assert body.count("step step-running") == 1
    from provisioning.steps.base import get_kind

    assert body.count("step step-waiting") == len(get_kind("create").steps) - 3
    assert "Creating the account&#x27;s user and home folder" in body


def test_finished_operation_stops_polling(client, owner, customer, plan, node):
    # given a completed operation
    service = make_service(customer, plan, node)
    op = make_operation(service, state="completed")
    client.force_login(owner)
    response = client.get(
        reverse("panel:operation_progress", args=[service.pk, op.pk]), HTTP_HX_REQUEST="true"
    )
    # then the partial has no polling left and tells the page to refresh its facts
    assert "hx-trigger" not in response.content.decode()
    assert response["HX-Trigger"] == "operation-finished"


def test_failed_operation_explains_in_plain_words(client, owner, customer, plan, node):
    # given a create that failed at the database step and was rolled back
    service = make_service(customer, plan, node, state="failed")
    op = make_operation(
        service,
        state="rolled_back",
        reason="The database shop_wp already exists: delete it or rename it first. "
        "Everything it had done was undone.",
    )
    make_run(op, "validate", StepRun.Status.SUCCEEDED)
    make_run(op, "database", StepRun.Status.FAILED, position=4)
    make_run(op, "validate", StepRun.Status.SUCCEEDED, direction="undo")
    client.force_login(owner)
    # when the service page is shown
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    # then the failure is told in words, with its reason, without the command that failed
    assert "stopped while creating the MySQL database" in body
    assert "The database shop_wp already exists: delete it or rename it first." in body
    assert body.count("Everything it had done was undone") == 1
    assert "exited with" not in body
    assert "step step-failed" in body and "step step-undone" in body


def test_failed_without_rollback_says_so(client, owner, customer, plan, node):
    # given an operation that failed and could not be undone
    service = make_service(customer, plan, node)
    op = make_operation(service, kind="dns_records", state="failed", reason="undo failed")
    make_run(op, "dns_records", StepRun.Status.FAILED)
    client.force_login(owner)
    body = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    # then the customer is not told that everything was undone
    assert "Updating DNS records stopped while saving the DNS records" in body
    assert "could not be undone automatically" in body
    assert "Everything it had done was undone" not in body


def test_terminated_service_page_is_gone(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, state="terminated")
    client.force_login(owner)
    assert client.get(reverse("panel:service", args=[service.pk])).status_code == 404


def test_service_page_query_count_is_constant(client, owner, customer, plan, node):
    # given a service page's queries with one operation, then with twelve
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    service = make_service(customer, plan, node)
    make_operation(service)
    client.force_login(owner)
    url = reverse("panel:service", args=[service.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for _ in range(11):
        op = make_operation(service)
        make_run(op, "validate", StepRun.Status.SUCCEEDED)
    for _ in range(30):
        make_service(customer, plan, node)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    # then it is the same number
    assert len(many.captured_queries) == len(one.captured_queries)
