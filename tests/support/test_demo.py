"""The demo's support desk: departments customers can pick, replies agents start from."""

from __future__ import annotations

import pytest

from support.demo import load_demo_support
from support.models import CannedReply, Department

pytestmark = pytest.mark.django_db


def test_the_demo_seeds_departments_and_canned_replies_once():
    load_demo_support()
    load_demo_support()
    assert list(Department.objects.filter(is_active=True).values_list("name", flat=True)) == [
        "Technical support",
        "Billing",
        "Sales",
    ]
    assert CannedReply.objects.count() == 5
    assert CannedReply.objects.filter(department=None).count() == 1
