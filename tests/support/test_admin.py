"""Staff in the admin: the ticket page, reply and note from it, roles, SLA view."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from support import services
from support.attachments import check_upload
from support.models import MessageKind, Ticket, TicketState
from tests.staff import sign_in_staff
from tests.support.conftest import png_upload
from tests.support.factories import CannedReplyFactory, DepartmentFactory

pytestmark = pytest.mark.django_db


def change_url(ticket):
    return reverse("admin:support_ticket_change", args=[ticket.pk])


def reply_url(ticket):
    return reverse("admin:support_ticket_reply", args=[ticket.pk])


def test_ticket_page_shows_conversation_notes_and_the_customer(client, ticket, agent, owner):
    services.ticket_add_note(ticket=ticket, user=agent, body="NOTE-FOR-STAFF check node")
    sign_in_staff(client, agent)
    page = client.get(change_url(ticket))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Since this morning example.org answers 502" in html
    assert "NOTE-FOR-STAFF check node" in html
    # the customer's details sit beside the conversation
    assert "Olivia Owner" in html
    assert owner.email in html
    assert 'action="' + reply_url(ticket) + '"' in html


def test_agent_replies_from_the_ticket_page(
    client, ticket, agent, owner, mailoutbox, django_capture_on_commit_callbacks
):
    sign_in_staff(client, agent)
    mailoutbox.clear()
    # when the agent sends a reply with a screenshot and resolves
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reply_url(ticket),
            {
                "kind": "reply",
                "body": "PHP-FPM was restarted; the site answers again.",
                "resolve": "on",
                "attachments": [png_upload("proof.png")],
            },
        )
    # then the page comes back with the reply in the conversation
    assert response.status_code == 302
    assert response["Location"] == change_url(ticket)
    ticket.refresh_from_db()
    assert ticket.state == TicketState.RESOLVED
    assert ticket.first_response_at is not None
    message = ticket.messages.get(kind=MessageKind.STAFF)
    assert message.author == agent
    assert message.attachments.get().original_name == "proof.png"
    # and the customer is told, and the audit log knows who answered
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert AuditLog.objects.filter(
        action="support.ticket_staff_reply", actor=agent, object_id=str(ticket.pk)
    ).exists()
    # and the customer sees the answer on their page
    client.force_login(owner)
    page = client.get(reverse("support:ticket", args=[ticket.pk]))
    assert b"PHP-FPM was restarted" in page.content


def test_agent_adds_an_internal_note_from_the_ticket_page(client, ticket, agent, mailoutbox):
    sign_in_staff(client, agent)
    mailoutbox.clear()
    response = client.post(reply_url(ticket), {"kind": "note", "body": "Looks like abuse."})
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.state == TicketState.OPEN
    assert ticket.messages.get(kind=MessageKind.NOTE).body == "Looks like abuse."
    assert mailoutbox == []
    assert AuditLog.objects.filter(action="support.ticket_note", actor=agent).exists()


def test_a_canned_reply_fills_an_empty_message(client, ticket, agent, department):
    canned = CannedReplyFactory.create(department=department)
    sign_in_staff(client, agent)
    response = client.post(reply_url(ticket), {"kind": "reply", "canned": canned.pk, "body": ""})
    assert response.status_code == 302
    assert ticket.messages.get(kind=MessageKind.STAFF).body == canned.body


def test_reply_errors_are_shown_on_the_ticket_page(client, ticket, agent):
    sign_in_staff(client, agent)
    response = client.post(reply_url(ticket), {"kind": "note", "body": "", "resolve": "on"})
    assert response.status_code == 400
    form = response.context["reply_form"]
    assert "body" in form.errors
    assert "resolve" in form.errors
    assert b"Write a message or pick a canned reply." in response.content
    assert ticket.messages.count() == 1


def test_billing_can_view_tickets_but_not_answer(client, ticket, billing_clerk):
    sign_in_staff(client, billing_clerk)
    page = client.get(change_url(ticket))
    assert page.status_code == 200
    assert reply_url(ticket).encode() not in page.content
    response = client.post(reply_url(ticket), {"kind": "reply", "body": "Hello from billing"})
    assert response.status_code == 403
    assert ticket.messages.count() == 1


def test_administrator_can_answer(client, ticket, administrator):
    sign_in_staff(client, administrator)
    response = client.post(reply_url(ticket), {"kind": "reply", "body": "Admin here."})
    assert response.status_code == 302
    assert ticket.messages.filter(kind=MessageKind.STAFF, author=administrator).exists()


def test_customers_cannot_reach_the_admin_ticket_page(client, ticket, owner):
    client.force_login(owner)
    for url in (change_url(ticket), reply_url(ticket)):
        response = client.post(url, {"kind": "reply", "body": "x"})
        assert response.status_code == 302
        assert "login" in response["Location"]
    assert ticket.messages.count() == 1


def test_assignment_and_details_from_the_change_form_do_not_touch_the_state(
    client, ticket, agent, owner, department
):
    other = DepartmentFactory.create(name="Billing", email="billing@support.example.com")
    sign_in_staff(client, agent)
    page = client.get(change_url(ticket))
    # meanwhile the customer replies (the form the agent holds is now stale)
    services.ticket_reply_staff(ticket=ticket, user=agent, body="first")
    services.ticket_reply_customer(ticket=ticket, user=owner, body="second")
    assert page.status_code == 200
    response = client.post(
        change_url(ticket),
        {
            "department": other.pk,
            "priority": "urgent",
            "subject": ticket.subject,
            "assigned_to": agent.pk,
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert ticket.assigned_to == agent
    assert ticket.department == other
    assert ticket.priority == "urgent"
    assert ticket.state == TicketState.AWAITING_STAFF
    assert AuditLog.objects.filter(action="support.ticket_assigned", actor=agent).exists()
    updated = AuditLog.objects.get(action="support.ticket_updated", actor=agent)
    assert set(updated.detail) == {"department", "priority"}


def test_bulk_actions_resolve_and_assign(client, ticket, agent):
    sign_in_staff(client, agent)
    changelist = reverse("admin:support_ticket_changelist")
    client.post(changelist, {"action": "assign_to_me", "_selected_action": [ticket.pk]})
    client.post(changelist, {"action": "resolve_tickets", "_selected_action": [ticket.pk]})
    ticket.refresh_from_db()
    assert ticket.assigned_to == agent
    assert ticket.state == TicketState.RESOLVED


def test_staff_download_attachments_and_billing_views_the_sla(
    client, ticket, agent, billing_clerk, owner
):
    message = services.ticket_reply_customer(
        ticket=ticket, user=owner, body="pic", files=[check_upload(png_upload())]
    )
    attachment = message.attachments.get()
    sign_in_staff(client, agent)
    response = client.get(
        reverse("admin:support_ticket_attachment", args=[ticket.pk, attachment.pk])
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    services.ticket_reply_staff(ticket=ticket, user=agent, body="ok")
    sign_in_staff(client, billing_clerk)
    sla = client.get(reverse("admin:support_ticket_sla"), {"days": "all"})
    assert sla.status_code == 200
    assert b"Technical support" in sla.content
    assert sla.context["rows"][0]["row"].answered == 1
