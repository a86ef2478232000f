"""Customer pages: list, open, read, reply, resolve; scoped to the customer."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from support import services
from support.models import MessageKind, Ticket, TicketState
from tests.support.conftest import png_upload
from tests.support.factories import DepartmentFactory

pytestmark = pytest.mark.django_db


def login(client: Client, user) -> Client:
    client.force_login(user)
    return client


def test_owner_opens_a_ticket_and_lands_on_it(
    client, owner, department, mailoutbox, django_capture_on_commit_callbacks
):
    login(client, owner)
    # when the owner fills in the form
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("support:ticket_new"),
            {
                "department": department.pk,
                "priority": "high",
                "subject": "Mail does not arrive",
                "body": "Nothing reached info@ since yesterday.",
            },
        )
    # then a ticket exists for their customer and they see it
    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("support:ticket", args=[ticket.pk])
    assert ticket.customer == owner.customers.get()
    assert ticket.priority == "high"
    page = client.get(response["Location"])
    assert b"Nothing reached info@ since yesterday." in page.content
    # and the department is told
    assert [m.to for m in mailoutbox] == [["tech@support.example.com"]]


def test_open_form_shows_errors_next_to_the_fields(client, owner, department):
    login(client, owner)
    response = client.post(
        reverse("support:ticket_new"),
        {"department": department.pk, "priority": "whenever", "subject": "", "body": ""},
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {"priority", "subject", "body"}
    # the messages are rendered with their field
    html = response.content.decode()
    assert 'id="id_subject_error"' in html
    assert 'id="id_priority_error"' in html
    assert not Ticket.objects.exists()


def test_an_inactive_department_cannot_be_chosen(client, owner, department):
    closed = DepartmentFactory.create(name="Old sales", email="sales@x.example", is_active=False)
    login(client, owner)
    response = client.post(
        reverse("support:ticket_new"),
        {"department": closed.pk, "priority": "low", "subject": "Hello there", "body": "Hi"},
    )
    assert "department" in response.context["form"].errors
    assert not Ticket.objects.exists()


def test_teammate_sees_and_answers_the_customers_tickets(client, ticket, teammate):
    login(client, teammate)
    listing = client.get(reverse("support:tickets"))
    assert ticket.subject.encode() in listing.content
    response = client.post(
        reverse("support:ticket", args=[ticket.pk]), {"body": "I am the colleague, same here."}
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.state == TicketState.AWAITING_STAFF
    assert ticket.messages.last().author == teammate


def test_reply_form_errors_are_shown_and_nothing_is_saved(client, ticket, owner):
    login(client, owner)
    response = client.post(reverse("support:ticket", args=[ticket.pk]), {"body": " "})
    assert response.status_code == 200
    assert "body" in response.context["form"].errors
    assert ticket.messages.count() == 1


def test_customer_marks_the_ticket_resolved(client, ticket, owner):
    login(client, owner)
    response = client.post(reverse("support:ticket_resolve", args=[ticket.pk]))
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.state == TicketState.RESOLVED


def test_closed_ticket_page_offers_no_reply_form(client, ticket, owner, agent):
    services.ticket_close(ticket=ticket, actor=agent)
    login(client, owner)
    page = client.get(reverse("support:ticket", args=[ticket.pk]))
    assert page.context["can_reply"] is False
    assert b"Send reply" not in page.content
    response = client.post(reverse("support:ticket", args=[ticket.pk]), {"body": "Hello?"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert ticket.messages.count() == 1


def test_internal_notes_never_appear_on_the_customer_page(client, ticket, owner, agent):
    # given a note and a reply from staff
    services.ticket_add_note(ticket=ticket, user=agent, body="SECRET-NOTE customer is rude")
    services.ticket_reply_staff(ticket=ticket, user=agent, body="We restarted your pool.")
    login(client, owner)
    # when the customer reads the ticket
    page = client.get(reverse("support:ticket", args=[ticket.pk]))
    # then the reply is there and the note is not
    assert b"We restarted your pool." in page.content
    assert b"SECRET-NOTE" not in page.content
    kinds = {m.kind for m in page.context["conversation"]}
    assert MessageKind.NOTE not in kinds


def _customer_urls(ticket, attachment_id):
    return [
        ("get", reverse("support:ticket", args=[ticket.pk]), {}),
        ("post", reverse("support:ticket", args=[ticket.pk]), {"body": "stranger writes"}),
        ("post", reverse("support:ticket_resolve", args=[ticket.pk]), {}),
        ("get", reverse("support:attachment", args=[ticket.pk, attachment_id]), {}),
    ]


@pytest.fixture
def ticket_with_file(ticket, owner):
    from support.attachments import check_upload

    message = services.ticket_reply_customer(
        ticket=ticket, user=owner, body="Screenshot attached", files=[check_upload(png_upload())]
    )
    return ticket, message.attachments.get()


def test_stranger_gets_404_on_every_ticket_url(client, ticket_with_file, stranger):
    ticket, attachment = ticket_with_file
    login(client, stranger)
    for method, url, data in _customer_urls(ticket, attachment.pk):
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url)
        assert b"502" not in response.content
    # and the stranger's own list does not show it
    listing = client.get(reverse("support:tickets"))
    assert ticket.subject.encode() not in listing.content
    # nothing changed
    ticket.refresh_from_db()
    assert ticket.state == TicketState.AWAITING_STAFF
    assert not ticket.messages.filter(body="stranger writes").exists()


def test_owner_and_teammate_reach_every_ticket_url(client, ticket_with_file, owner, teammate):
    ticket, attachment = ticket_with_file
    for user in (owner, teammate):
        login(client, user)
        for method, url, _data in _customer_urls(ticket, attachment.pk):
            if method == "get":
                assert client.get(url).status_code == 200, url


def test_anonymous_is_sent_to_login_on_every_support_url(client, ticket_with_file):
    ticket, attachment = ticket_with_file
    urls = [
        ("get", reverse("support:tickets"), {}),
        ("get", reverse("support:ticket_new"), {}),
        ("post", reverse("support:ticket_new"), {"subject": "x"}),
        *_customer_urls(ticket, attachment.pk),
    ]
    for method, url, data in urls:
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("account_login"))


def test_a_user_without_customer_gets_404_not_a_crash(client, ticket):
    from tests.factories import UserFactory

    loner = UserFactory(email="loner@example.org")
    login(client, loner)
    assert client.get(reverse("support:ticket", args=[ticket.pk])).status_code == 404
    assert client.get(reverse("support:ticket_new")).status_code == 404
    assert client.get(reverse("support:tickets")).status_code == 200


def test_forms_need_the_csrf_token(ticket, owner, department):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert (
        client.post(reverse("support:ticket", args=[ticket.pk]), {"body": "x y"}).status_code == 403
    )
    assert client.post(reverse("support:ticket_resolve", args=[ticket.pk])).status_code == 403
    response = client.post(
        reverse("support:ticket_new"),
        {"department": department.pk, "priority": "low", "subject": "Hello", "body": "Hi"},
    )
    assert response.status_code == 403
    # and the pages carry the token in their forms
    page = client.get(reverse("support:ticket", args=[ticket.pk]))
    assert page.content.count(b"csrfmiddlewaretoken") >= 2


def test_staff_e_mail_addresses_are_not_shown_to_customers(client, ticket, owner, agent):
    agent.full_name = ""
    agent.save(update_fields=["full_name"])
    services.ticket_reply_staff(ticket=ticket, user=agent, body="Fixed it.")
    client.force_login(owner)
    page = client.get(reverse("support:ticket", args=[ticket.pk]))
    assert b"Fixed it." in page.content
    assert agent.email.encode() not in page.content


def test_the_ticket_list_pages_through_many_tickets(client, owner, customer, department):
    for n in range(30):
        services.ticket_open(
            customer=customer, user=owner, department=department, subject=f"Q{n:02d}", body="b b"
        )
    client.force_login(owner)
    first = client.get(reverse("support:tickets"))
    second = client.get(reverse("support:tickets"), {"page": 2})
    assert len(first.context["tickets"]) == 25
    assert len(second.context["tickets"]) == 5
    assert b"Page 1 of 2" in first.content
