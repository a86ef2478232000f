"""E-mail both ways; internal notes never leave by mail."""

from __future__ import annotations

import pytest

from support import services
from support.notifications import notify_message

pytestmark = pytest.mark.django_db


def test_new_ticket_mails_the_department(ticket, mailoutbox):
    [email] = mailoutbox
    assert email.to == ["tech@support.example.com"]
    assert f"[#{ticket.pk}] New ticket" in email.subject
    assert "502 Bad Gateway" in email.body
    assert f"/admin/support/ticket/{ticket.pk}/change/" in email.body


def test_staff_reply_mails_the_customer_with_only_that_reply(
    ticket, agent, owner, teammate, mailoutbox, django_capture_on_commit_callbacks
):
    mailoutbox.clear()
    # given an internal note, then a reply
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_add_note(ticket=ticket, user=agent, body="SECRET-NOTE refund abuse?")
    # then the note mailed nobody
    assert mailoutbox == []
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_reply_staff(ticket=ticket, user=agent, body="Your pool is restarted.")
    # then the opener (the owner) gets the reply, without the note
    [email] = mailoutbox
    assert email.to == [owner.email]
    assert "Your pool is restarted." in email.body
    assert "SECRET-NOTE" not in email.body
    assert "SECRET-NOTE" not in email.subject
    assert f"/support/{ticket.pk}/" in email.body
    assert email.reply_to == ["tech@support.example.com"]


def test_a_teammates_ticket_mails_the_teammate_and_the_owner(
    customer, owner, teammate, department, agent, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ticket = services.ticket_open(
            customer=customer, user=teammate, department=department, subject="Hi", body="Help"
        )
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_reply_staff(ticket=ticket, user=agent, body="Sure.")
    assert mailoutbox[0].to == [teammate.email, owner.email]


def test_customer_reply_mails_the_department_and_the_assigned_agent(
    ticket, agent, owner, mailoutbox, django_capture_on_commit_callbacks
):
    services.ticket_assign(ticket=ticket, actor=agent, assignee=agent)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_reply_customer(ticket=ticket, user=owner, body="Any news?")
    [email] = mailoutbox
    assert email.to == ["tech@support.example.com", agent.email]
    assert "Customer reply" in email.subject
    assert "Any news?" in email.body


def test_internal_notes_stay_out_of_every_later_mail(
    ticket, agent, owner, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_add_note(ticket=ticket, user=agent, body="SECRET-NOTE one")
        services.ticket_reply_staff(ticket=ticket, user=agent, body="Reply one")
        services.ticket_add_note(ticket=ticket, user=agent, body="SECRET-NOTE two")
        services.ticket_reply_customer(ticket=ticket, user=owner, body="Reply two")
        services.ticket_reply_staff(ticket=ticket, user=agent, body="Reply three", resolve=True)
    assert len(mailoutbox) == 4
    for email in mailoutbox:
        assert "SECRET-NOTE" not in email.body + email.subject


def test_notifying_twice_sends_once(ticket, agent, mailoutbox):
    # given a reply whose e-mail was not sent yet (its on_commit never ran here)
    message = services.ticket_reply_staff(ticket=ticket, user=agent, body="Done.")
    mailoutbox.clear()
    # when the task runs twice
    assert notify_message(message_id=message.pk) is True
    assert notify_message(message_id=message.pk) is False
    # then one e-mail went out
    assert len(mailoutbox) == 1
