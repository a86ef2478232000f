"""A ticket may be about one of the customer's own services, never someone else's."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from support import services
from support.models import Ticket
from tests.staff import sign_in_staff
from tests.support.factories import ServiceFactory

pytestmark = pytest.mark.django_db


def test_the_form_offers_only_the_customers_services_and_links_the_ticket(
    client, owner, customer, department, stranger
):
    mine = ServiceFactory.create(customer=customer, domain="olivia.example.org")
    theirs = ServiceFactory.create(customer=stranger.customers.get(), domain="sam.example.net")
    client.force_login(owner)
    page = client.get(reverse("support:ticket_new"))
    assert b"olivia.example.org" in page.content
    assert b"sam.example.net" not in page.content

    # a stranger's service id is refused next to the field
    data = {"department": department.pk, "priority": "normal", "subject": "About my site"}
    response = client.post(
        reverse("support:ticket_new"), {**data, "body": "Help", "service": theirs.pk}
    )
    assert "service" in response.context["form"].errors
    assert not Ticket.objects.exists()

    # the customer's own service is linked
    response = client.post(
        reverse("support:ticket_new"), {**data, "body": "Help", "service": mine.pk}
    )
    ticket = Ticket.objects.get()
    assert ticket.service == mine
    detail = client.get(response["Location"])
    assert b"olivia.example.org" in detail.content


def test_no_service_is_fine(client, owner, customer, department):
    ServiceFactory.create(customer=customer)
    client.force_login(owner)
    response = client.post(
        reverse("support:ticket_new"),
        {
            "department": department.pk,
            "priority": "low",
            "subject": "General",
            "body": "Hi",
            "service": "",
        },
    )
    assert response.status_code == 302
    assert Ticket.objects.get().service is None


def test_the_service_layer_refuses_another_customers_service(customer, owner, department, stranger):
    theirs = ServiceFactory.create(customer=stranger.customers.get())
    with pytest.raises(ValidationError):
        services.ticket_open(
            customer=customer,
            user=owner,
            department=department,
            subject="x",
            body="y",
            service_id=theirs.pk,
        )


def test_the_admin_ticket_page_lists_the_customers_services(
    client, owner, customer, department, agent
):
    mine = ServiceFactory.create(customer=customer, domain="olivia.example.org")
    ticket = services.ticket_open(
        customer=customer,
        user=owner,
        department=department,
        subject="s",
        body="b",
        service_id=mine.pk,
    )
    sign_in_staff(client, agent)
    page = client.get(reverse("admin:support_ticket_change", args=[ticket.pk]))
    assert page.status_code == 200
    assert b"olivia.example.org" in page.content
    assert b"(this ticket)" in page.content
