from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from provisioning.models import Node, Operation, Service, StepRun
from tests.factories import CustomerFactory, PlanFactory, UserFactory
from tests.staff import make_staff, sign_in_staff

pytestmark = pytest.mark.django_db


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@override_settings(METRICS_TOKEN="scrape-me")
def test_metrics_need_the_token_or_staff(client: Client) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(UserFactory.create(is_staff=False))
    assert client.get("/metrics").status_code == 401
    # A staff session counts once it gave its second factor (see test_staff_second_factor.py)
    staff = make_staff("sam.staff@staff.example.com")
    client.force_login(staff)
    assert client.get("/metrics").status_code == 401
    sign_in_staff(client, staff)
    assert client.get("/metrics").status_code == 200


@override_settings(METRICS_TOKEN="scrape-me")
def test_scrapes_show_the_counters_moving(client: Client) -> None:
    # Given a node with one account whose create operation completed
    node = Node.objects.create(name="web1", address="127.0.0.1", roles=["web"],
                               health={"ok": True})  # fmt: skip
    service = Service.objects.create(
        customer=CustomerFactory.create(), plan=PlanFactory.create(), node=node,
        domain="a.example.com", username="aexample",
    )  # fmt: skip
    started = timezone.now()
    op = Operation.objects.create(service=service, kind="create")
    Operation.objects.filter(pk=op.pk).update(state="completed")
    StepRun.objects.create(
        operation=op, position=0, step="create_user", status="succeeded",
        started_at=started, finished_at=started + timedelta(seconds=0.2),
    )  # fmt: skip
    before = scrape(client)
    completed = ("hostwright_operations_total", (("kind", "create"), ("state", "completed")))
    assert before[completed] == 1
    step = ("hostwright_step_duration_seconds_bucket",
            (("direction", "apply"), ("le", "0.25"), ("step", "create_user")))  # fmt: skip
    assert before[step] == 1
    assert before[("hostwright_node_up", (("node", "web1"),))] == 1
    assert before[("hostwright_node_accounts", (("node", "web1"),))] == 1
    assert ("hostwright_queue_depth", (("queue", "provisioning"),)) in before
    # When another operation fails
    failed = Operation.objects.create(service=service, kind="suspend")
    Operation.objects.filter(pk=failed.pk).update(state="rolled_back")
    # Then the next scrape shows it, and the earlier counter has not gone back
    after = scrape(client)
    assert after[completed] == 1
    assert after[("hostwright_operations_total",
                  (("kind", "suspend"), ("state", "rolled_back")))] == 1  # fmt: skip
