"""Invoices and tickets through the customer API, scoped to the token's customer."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client

from api.services import api_token_create
from billing.services import LineSpec, invoice_create
from support.models import Department, Ticket
from support.services import ticket_add_note

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def read_token(owner, customer) -> str:
    return api_token_create(customer=customer, user=owner, name="r").secret


@pytest.fixture
def write_token(owner, customer) -> str:
    return api_token_create(customer=customer, user=owner, name="w", scope="write").secret


def issue(customer, amount: str = "10.00"):
    return invoice_create(
        customer=customer,
        kind="manual",
        lines=[LineSpec(description="Hosting", amount=Decimal(amount))],
        due_date=dt.date.today() + dt.timedelta(days=14),
    )


def test_invoices_are_the_customers_own(client: Client, read_token, customer, stranger) -> None:
    mine = issue(customer)
    theirs = issue(stranger.customers.get())
    listed = client.get("/api/v1/invoices/", headers=bearer(read_token)).json()["results"]
    assert [row["number"] for row in listed] == [mine.number]
    detail = client.get(f"/api/v1/invoices/{mine.pk}/", headers=bearer(read_token)).json()
    assert detail["lines"][0]["description"] == "Hosting"
    assert Decimal(detail["total"]) == mine.total
    other = client.get(f"/api/v1/invoices/{theirs.pk}/", headers=bearer(read_token))
    assert other.status_code == 404


def test_tickets_open_and_reply_with_a_write_token(
    client: Client, write_token, read_token, customer, owner
) -> None:
    Department.objects.create(name="Technical", email="tech@example.com")
    # A read token cannot open a ticket
    refused = client.post(
        "/api/v1/tickets/",
        {"department": "Technical", "subject": "Site down", "body": "502 since noon"},
        content_type="application/json",
        headers=bearer(read_token),
    )
    assert refused.status_code == 403
    assert not Ticket.objects.exists()
    # A write token can
    created = client.post(
        "/api/v1/tickets/",
        {"department": "Technical", "subject": "Site down", "body": "502 since noon"},
        content_type="application/json",
        headers=bearer(write_token),
    )
    assert created.status_code == 201, created.content
    ticket = Ticket.objects.get()
    assert ticket.customer == customer
    assert created.json()["messages"][0]["body"] == "502 since noon"
    # Staff notes never appear in the API
    staff = owner.__class__.objects.create_user("agent@example.com", "x" * 12, is_staff=True)
    ticket_add_note(ticket=ticket, user=staff, body="customer is on the old PHP")
    detail = client.get(f"/api/v1/tickets/{ticket.pk}/", headers=bearer(read_token)).json()
    assert [m["body"] for m in detail["messages"]] == ["502 since noon"]
    # Replying moves the ticket to waiting for staff
    reply = client.post(
        f"/api/v1/tickets/{ticket.pk}/reply/",
        {"body": "still down"},
        content_type="application/json",
        headers=bearer(write_token),
    )
    assert reply.status_code == 201, reply.content


def test_bad_ticket_input_and_strangers(client: Client, write_token, stranger) -> None:
    Department.objects.create(name="Technical", email="tech@example.com")
    unknown = client.post(
        "/api/v1/tickets/",
        {"department": "Nope", "subject": "x", "body": "y"},
        content_type="application/json",
        headers=bearer(write_token),
    )
    assert unknown.status_code == 400
    assert "department" in unknown.json()["error"]["fields"]
    typo = client.post(
        "/api/v1/tickets/",
        {"department": "Technical", "subject": "x", "body": "y", "prio": "high"},
        content_type="application/json",
        headers=bearer(write_token),
    )
    assert typo.json()["error"]["code"] == "unknown_field"
    # Another customer's ticket can be neither read nor answered
    other_token = api_token_create(
        customer=stranger.customers.get(), user=stranger, name="s", scope="write"
    ).secret
    client.post(
        "/api/v1/tickets/",
        {"department": "Technical", "subject": "mine", "body": "secret"},
        content_type="application/json",
        headers=bearer(other_token),
    )
    theirs = Ticket.objects.get(subject="mine")
    assert (
        client.get(f"/api/v1/tickets/{theirs.pk}/", headers=bearer(write_token)).status_code == 404
    )
    answer = client.post(
        f"/api/v1/tickets/{theirs.pk}/reply/", {"body": "hi"},
        content_type="application/json", headers=bearer(write_token),
    )  # fmt: skip
    assert answer.status_code == 404
    assert theirs.messages.count() == 1
