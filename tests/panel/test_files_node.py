"""The file manager against a real account on the test node (created by the real engine)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from django.urls import reverse

from provisioning import services
from provisioning.models import Operation, Service
from tests.factories import PlanFactory
from tests.node.harness import http_get, wait_for_operation

pytestmark = [
    pytest.mark.node,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    # (each test's account is terminated at its end: nothing of it stays on the node)
    pytest.mark.usefixtures("services_terminated_after"),
]


@pytest.fixture
def live_service(worker, hosting_node, customer, owner) -> Service:
    plan = PlanFactory.create(php_workers=2, memory_mb=256, cpu_percent=50, processes=40)
    service = services.service_order(
        customer=customer, plan=plan, domain=f"files-{os.getpid()}.example"
    )
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE))
    assert create.state == Operation.State.COMPLETED, create.reason
    return Service.objects.select_related("node").get(pk=service.pk)


def files_url(service: Service, path: str = "") -> str:
    url = reverse("panel:files", args=[service.pk])
    return f"{url}?path={path}" if path else url


def action(client, service: Service, act: str, **data):
    return client.post(reverse("panel:file_action", args=[service.pk, act]), data)


def test_browse_upload_download_edit_rename_chmod_delete(client, owner, live_service):
    service, home = live_service, Path(f"/home/{live_service.username}")
    uid = pwd.getpwnam(service.username).pw_uid
    client.force_login(owner)
    # given the account's home / when the owner browses it / then public_html is listed
    body = client.get(files_url(service)).content.decode()
    alert = body.find('role="alert"')
    assert alert < 0, body[alert : alert + 300]
    assert "public_html" in body
    # when a binary file larger than one read chunk is uploaded into public_html
    blob = bytes(range(256)) * 40 + b"\x00end"
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        reverse("panel:file_action", args=[service.pk, "upload"]),
        {"folder": "public_html", "file": SimpleUploadedFile("blob.bin", blob)},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    # then it is on the node, owned by the account's user, and downloads byte for byte
    assert response.status_code == 200, response.content
    assert (home / "public_html/blob.bin").read_bytes() == blob
    assert (home / "public_html/blob.bin").stat().st_uid == uid
    download = client.get(
        reverse("panel:file_download", args=[service.pk]) + "?path=public_html/blob.bin"
    )
    assert download.status_code == 200 and download.content == blob
    # when a folder and a text file are created and the file is edited
    action(client, service, "mkdir", **{"folder": "public_html", "mkdir-name": "docs"})
    action(client, service, "touch", **{"folder": "public_html/docs", "touch-name": "hello.html"})
    edit_url = reverse("panel:file_edit", args=[service.pk]) + "?path=public_html/docs/hello.html"
    assert client.get(edit_url).status_code == 200
    client.post(edit_url, {"content": "<h1>Hello from the panel</h1>\n"})
    # then the site serves it
    assert http_get(service.domain, "/docs/hello.html") == (200, "<h1>Hello from the panel</h1>\n")
    assert (home / "public_html/docs").stat().st_uid == uid
    # when it is renamed and its permissions changed
    action(
        client,
        service,
        "rename",
        folder="public_html/docs",
        path="public_html/docs/hello.html",
        name="index.html",
    )
    action(
        client,
        service,
        "chmod",
        folder="public_html/docs",
        path="public_html/docs/index.html",
        mode="600",
    )
    # then the node shows both
    renamed = home / "public_html/docs/index.html"
    assert renamed.exists() and not (home / "public_html/docs/hello.html").exists()
    assert oct(renamed.stat().st_mode & 0o777) == "0o600"
    listing = client.get(files_url(service, "public_html/docs")).content.decode()
    assert "index.html" in listing and 'value="600"' in listing
    # and the access log tail on the service page shows that request
    log = client.get(reverse("panel:log_tail", args=[service.pk, "access"])).content.decode()
    assert "GET /docs/hello.html" in log
    assert client.get(reverse("panel:log_tail", args=[service.pk, "secrets"])).status_code == 404
    # when the folder is deleted / then it is gone
    action(client, service, "delete", folder="public_html", path="public_html/docs")
    assert not (home / "public_html/docs").exists()


def test_bad_input_is_refused_next_to_the_field(client, owner, live_service):
    client.force_login(owner)
    home = Path(f"/home/{live_service.username}")
    # a folder name that climbs out is refused next to the name field, nothing is created
    response = action(client, live_service, "mkdir", **{"folder": "", "mkdir-name": "../escape"})
    assert response.status_code == 400
    page = response.content.decode()
    errors = page[page.index('id="id_mkdir-name-errors"') :][:300]
    assert "go up a folder" in errors
    assert not (home.parent / "escape").exists()
    # a name the node refuses (taken) is also shown next to the field
    response = action(client, live_service, "mkdir", **{"folder": "", "mkdir-name": "public_html"})
    page = response.content.decode()
    assert response.status_code == 400
    assert "taken" in page[page.index('id="id_mkdir-name-errors"') :][:300]
    # a bad mode on a row's form comes back as a message on the folder page
    action(client, live_service, "chmod", folder="", path="public_html", mode="999")
    assert "octal permissions" in client.get(files_url(live_service)).content.decode()
    # absolute paths and '..' in the query are not folders of the account
    assert client.get(files_url(live_service, "/etc")).status_code == 404
    assert client.get(files_url(live_service, "public_html/../..")).status_code == 404


def test_symlinks_cannot_leave_the_home(client, owner, live_service):
    # given a symlink to /etc that the account's user planted in its docroot
    home = Path(f"/home/{live_service.username}")
    link = home / "public_html" / "etc-link"
    link.symlink_to("/etc")
    os.lchown(link, pwd.getpwnam(live_service.username).pw_uid, -1)
    client.force_login(owner)
    # when the owner lists it, reads through it, writes through it
    listing = client.get(files_url(live_service, "public_html/etc-link")).content.decode()
    download = client.get(
        reverse("panel:file_download", args=[live_service.pk])
        + "?path=public_html/etc-link/hostname"
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = client.post(
        reverse("panel:file_action", args=[live_service.pk, "upload"]),
        {"folder": "public_html/etc-link", "file": SimpleUploadedFile("hw-evil.conf", b"x")},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    # then each is refused and nothing under /etc is read or written
    assert "leaves the home folder" in listing
    assert "passwd" not in listing
    assert download.status_code == 302
    assert upload.status_code == 400 and b"leaves the home folder" in upload.content
    assert not Path("/etc/hw-evil.conf").exists()
    # when the link is deleted / then the link goes and /etc stays
    action(client, live_service, "delete", folder="public_html", path="public_html/etc-link")
    assert not link.is_symlink() and Path("/etc/hostname").exists()
