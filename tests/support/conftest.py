"""Fixtures of the support desk: a department, staff in their roles, files on disk."""

from __future__ import annotations

import io

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.roles import ADMINISTRATOR, BILLING, SUPPORT_AGENT
from hosting.celery import app as celery_app
from support import services
from support.attachments import check_upload
from tests.factories import UserFactory
from tests.support.factories import DepartmentFactory

# A real 1x1 PNG.
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def png_upload(name: str = "screenshot.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, PNG_BYTES, content_type="image/png")


def text_upload(name: str = "error.log", content: bytes = b"PHP Fatal error: oops\n"):
    return SimpleUploadedFile(name, content, content_type="text/plain")


def checked(upload):
    return check_upload(upload)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    # Attachments land in a throwaway MEDIA_ROOT.
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _eager_celery():
    # Tasks queued with on_commit run in-process, so their e-mails reach mail.outbox.
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def department(db):
    return DepartmentFactory(name="Technical support", email="tech@support.example.com")


def _staff(email: str, role: str):
    user = UserFactory.create(email=email, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    # Staff need a second factor before the admin lets them in.
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})
    return user


@pytest.fixture
def agent(db):
    return _staff("alice.agent@staff.example.com", SUPPORT_AGENT)


@pytest.fixture
def administrator(db):
    return _staff("adam.admin@staff.example.com", ADMINISTRATOR)


@pytest.fixture
def billing_clerk(db):
    return _staff("bill.clerk@staff.example.com", BILLING)


@pytest.fixture
def ticket(customer, owner, department, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return services.ticket_open(
            customer=customer,
            user=owner,
            department=department,
            subject="My site shows a 502",
            body="Since this morning example.org answers 502 Bad Gateway.",
        )


__all__ = ["PNG_BYTES", "checked", "io", "png_upload", "text_upload"]
