"""The dashboard: services with their state, unpaid invoices, open tickets, notices."""

from __future__ import annotations

import pytest

from tests.panel.conftest import make_operation, make_service

pytestmark = pytest.mark.django_db


def test_visitor_gets_the_storefront(client):
    # given a visitor / when they open the home page / then they see the storefront
    response = client.get("/")
    assert response.status_code == 200
    assert "Create your account" in response.content.decode()


def test_dashboard_lists_services_with_state_badges(client, owner, customer, plan, node):
    # given an active and a suspended service
    make_service(customer, plan, node, domain="live.example.com")
    make_service(
        customer,
        plan,
        node,
        state="suspended",
        domain="held.example.com",
        suspension_reasons=["non_payment"],  # what billing's daily run writes
    )
    client.force_login(owner)
    # when the owner opens the dashboard
    body = client.get("/").content.decode()
    # then both are listed with their state, and the suspension is a notice with its reason
    assert "live.example.com" in body and "held.example.com" in body
    assert "badge-ok" in body and "Suspended" in body
    assert "held.example.com is suspended" in body
    assert "an invoice is overdue" in body


def test_failed_and_running_operations_become_notices(client, owner, customer, plan, node):
    # given one service whose creation was rolled back and one being set up
    broken = make_service(customer, plan, node, state="failed", domain="broken.example.com")
    make_operation(broken, state="rolled_back", reason="Step linux_user failed")
    busy = make_service(customer, plan, node, state="pending", domain="busy.example.com")
    make_operation(busy, state="provisioning")
    client.force_login(owner)
    # when the dashboard is shown
    body = client.get("/").content.decode()
    # then the customer reads both, in words, with no technical reason
    assert "Setting up your hosting broken.example.com did not finish" in body
    assert "Setting up your hosting: busy.example.com" in body
    assert "linux_user" not in body


def test_certificate_problems_become_a_notice(client, owner, customer, plan, node):
    # given an active site whose certificate could not be issued, then one that got its own
    bad = make_service(customer, plan, node, domain="nocert.example.com")
    make_operation(bad, kind="create")
    make_operation(bad, kind="certificate_issue", state="rolled_back")
    good = make_service(customer, plan, node, domain="cert.example.com")
    make_operation(good, kind="certificate_issue", state="failed")
    make_operation(good, kind="certificate_issue", state="completed")
    client.force_login(owner)
    body = client.get("/").content.decode()
    # then only the first one has a notice
    assert "No HTTPS certificate for nocert.example.com" in body
    assert "No HTTPS certificate for cert.example.com" not in body
    assert body.count("nocert.example.com did not finish") == 0


def test_terminated_services_are_not_listed(client, owner, customer, plan, node):
    # given a terminated service
    make_service(customer, plan, node, state="terminated", domain="gone.example.com")
    client.force_login(owner)
    # then the dashboard does not show it
    assert "gone.example.com" not in client.get("/").content.decode()


def test_another_customers_services_never_show(client, stranger, customer, plan, node):
    # given a service of Olivia's customer
    make_service(customer, plan, node, domain="olivia.example.com")
    client.force_login(stranger)
    # when the stranger opens their dashboard / then it is not there
    assert "olivia.example.com" not in client.get("/").content.decode()


def test_dashboard_query_count_does_not_grow_with_services(
    client, owner, customer, plan, node, django_assert_max_num_queries
):
    # given a customer with 3 services and the queries their dashboard takes
    for _ in range(3):
        make_operation(make_service(customer, plan, node), state="completed")
    client.force_login(owner)
    client.get("/")  # warm the session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get("/").status_code == 200
    # when they have 60 services, some suspended, some with failed operations
    for i in range(57):
        service = make_service(
            customer,
            plan,
            node,
            state="suspended" if i % 5 == 0 else "active",
            suspension_reasons=["overdue"] if i % 5 == 0 else [],
        )
        make_operation(service, state="rolled_back" if i % 7 == 0 else "completed")
    # then the dashboard takes no more queries than with 3
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get("/")
    assert response.content.decode().count('class="service-row"') == 60
