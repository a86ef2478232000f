"""What the file manager refuses before anything is sent to a node."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from panel import files
from tests.panel.conftest import make_service


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/etc/passwd", "relative to your home"),
        ("~root/.ssh", "relative to your home"),
        ("public_html/../../etc", "'..'"),
        ("..", "'..'"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        ("x" * 300, "at most 255 bytes"),
        ("a/" * 600, "at most 1024 characters"),
    ],
)
def test_bad_paths_are_refused(value, message):
    with pytest.raises(files.FileError, match=message):
        files.clean_path(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ""), ("public_html", "public_html"), ("./a//b/", "a/b"), ("a b/ü.txt", "a b/ü.txt")],
)
def test_good_paths_are_normalised(value, expected):
    assert files.clean_path(value) == expected


def test_names_and_modes():
    assert files.clean_name("index.php") == "index.php"
    with pytest.raises(files.FileError):
        files.clean_name("a/b")
    with pytest.raises(files.FileError):
        files.clean_name("")
    assert files.clean_mode("0755") == "0755"
    for bad in ("999", "u+x", "7", "77777", "644; rm -rf /"):
        with pytest.raises(files.FileError):
            files.clean_mode(bad)


@pytest.mark.django_db
def test_uploads_over_the_limit_are_refused(client, owner, customer, plan, node):
    # given an upload one byte over the limit / then it is refused with the limit in words,
    # before any node is contacted (the node row here points nowhere)
    service = make_service(customer, plan, node)
    client.force_login(owner)
    big = SimpleUploadedFile("big.bin", b"\0" * (files.MAX_UPLOAD + 1))
    response = client.post(
        reverse("panel:file_action", args=[service.pk, "upload"]),
        {"folder": "", "file": big},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert response.status_code == 400
    assert b"at most 8 MB" in response.content


@pytest.mark.django_db
def test_file_pages_refuse_suspended_accounts(client, owner, customer, plan, node):
    service = make_service(customer, plan, node, state="suspended")
    client.force_login(owner)
    page = client.get(reverse("panel:files", args=[service.pk])).content.decode()
    assert "while the account is active" in page
