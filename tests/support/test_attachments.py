"""Attachments: limits, types judged by content, private storage, safe download."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from support import services
from support.attachments import check_upload, clean_filename, sniff_type
from support.models import Attachment
from tests.support.conftest import PNG_BYTES, png_upload, text_upload

pytestmark = pytest.mark.django_db


def reply(client, ticket, files, body="See attached"):
    return client.post(
        reverse("support:ticket", args=[ticket.pk]), {"body": body, "attachments": files}
    )


def test_a_png_is_stored_privately_under_a_random_name_and_downloaded_as_attachment(
    client, ticket, owner, settings
):
    client.force_login(owner)
    # when the customer attaches a screenshot
    response = reply(client, ticket, [png_upload("my site <1>.png")])
    assert response.status_code == 302
    attachment = Attachment.objects.get()
    # then it is kept under MEDIA_ROOT with a random name that has no extension
    path = attachment.file.path
    assert path.startswith(str(settings.MEDIA_ROOT))
    assert "my site" not in path
    assert os.path.splitext(path)[1] == ""
    assert attachment.content_type == "image/png"
    assert attachment.size == len(PNG_BYTES)
    # and it downloads as an attachment, never rendered inline
    download = client.get(reverse("support:attachment", args=[ticket.pk, attachment.pk]))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["Content-Type"] == "image/png"
    assert download["X-Content-Type-Options"] == "nosniff"
    assert b"".join(download.streaming_content) == PNG_BYTES


def test_an_oversized_file_is_refused_with_a_message_at_the_field(client, ticket, owner, settings):
    settings.SUPPORT_ATTACHMENT_MAX_BYTES = 1024
    client.force_login(owner)
    big = SimpleUploadedFile("dump.txt", b"a" * 1025, content_type="text/plain")
    response = reply(client, ticket, [big])
    assert response.status_code == 200
    errors = response.context["form"].errors["attachments"]
    assert "too large" in errors[0]
    assert ticket.messages.count() == 1
    assert not Attachment.objects.exists()


def test_a_file_at_the_limit_is_accepted(ticket, owner, settings):
    settings.SUPPORT_ATTACHMENT_MAX_BYTES = 1024
    assert check_upload(SimpleUploadedFile("ok.txt", b"a" * 1024)).size == 1024


def test_a_type_outside_the_allow_list_is_refused(client, ticket, owner):
    client.force_login(owner)
    exe = SimpleUploadedFile("setup.exe", b"MZ\x90\x00" + b"\x00" * 100)
    response = reply(client, ticket, [exe])
    assert "cannot be attached" in response.context["form"].errors["attachments"][0]
    assert not Attachment.objects.exists()


def test_a_php_script_renamed_png_is_refused(client, ticket, owner):
    client.force_login(owner)
    php = SimpleUploadedFile("shell.png", b"<?php system($_GET['c']); ?>", content_type="image/png")
    response = reply(client, ticket, [php])
    assert "does not match" in response.context["form"].errors["attachments"][0]
    assert not Attachment.objects.exists()
    assert ticket.messages.count() == 1


def test_a_binary_file_named_txt_is_refused():
    with pytest.raises(ValidationError):
        check_upload(SimpleUploadedFile("notes.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"))


def test_too_many_files_are_refused(client, ticket, owner, settings):
    settings.SUPPORT_ATTACHMENT_MAX_FILES = 2
    client.force_login(owner)
    response = reply(client, ticket, [png_upload("a.png"), png_upload("b.png"), text_upload()])
    assert "at most 2" in response.context["form"].errors["attachments"][0]
    assert not Attachment.objects.exists()


def test_several_good_files_are_all_kept(client, ticket, owner):
    client.force_login(owner)
    response = reply(client, ticket, [png_upload("a.png"), text_upload("php.log")])
    assert response.status_code == 302
    assert sorted(Attachment.objects.values_list("original_name", "content_type")) == [
        ("a.png", "image/png"),
        ("php.log", "text/plain"),
    ]


def test_note_attachments_are_not_downloadable_by_the_customer(client, ticket, owner, agent):
    message = services.ticket_add_note(
        ticket=ticket, user=agent, body="server log", files=[check_upload(text_upload())]
    )
    attachment = message.attachments.get()
    client.force_login(owner)
    response = client.get(reverse("support:attachment", args=[ticket.pk, attachment.pk]))
    assert response.status_code == 404


def test_an_attachment_id_from_another_ticket_is_404(client, ticket, owner, customer, department):
    # given a second ticket of the same customer with a file
    other = services.ticket_open(
        customer=customer,
        user=owner,
        department=department,
        subject="Other",
        body="x y",
        files=[check_upload(png_upload())],
    )
    attachment = Attachment.objects.get(message__ticket=other)
    client.force_login(owner)
    # when asked through the wrong ticket's URL
    response = client.get(reverse("support:attachment", args=[ticket.pk, attachment.pk]))
    assert response.status_code == 404


def test_sniffing_and_names():
    assert sniff_type(PNG_BYTES, complete=True) == "image/png"
    assert sniff_type(b"%PDF-1.7\n", complete=True) == "application/pdf"
    assert sniff_type(b"\xff\xd8\xff\xe0", complete=True) == "image/jpeg"
    assert sniff_type("héllo".encode(), complete=True) == "text/plain"
    assert sniff_type(b"\x00\x01", complete=True) is None
    assert clean_filename("../../etc/passwd") == "passwd"
    assert clean_filename("C:\\Users\\me\\a\r\nb.png") == "ab.png"
    assert clean_filename("...") == "attachment"


def test_deleting_a_ticket_removes_its_files(
    ticket, owner, agent, django_capture_on_commit_callbacks
):
    message = services.ticket_reply_customer(
        ticket=ticket, user=owner, body="pic", files=[check_upload(png_upload())]
    )
    path = message.attachments.get().file.path
    assert os.path.exists(path)
    with django_capture_on_commit_callbacks(execute=True):
        ticket.delete()
    assert not os.path.exists(path)
