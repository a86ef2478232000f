"""Customer cron jobs: the panel's forms, the customer API, the checks and what the operations'
ends do to the rows (the node side: tests/node/test_cron_node.py, tests/lab/test_slices_lab.py)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from api.services import api_token_create
from provisioning.errors import ProvisioningRefused
from provisioning.models import CronJob, Operation
from provisioning.resources import cron
from provisioning.steps.base import get_kind
from tests.factories import PlanFactory
from tests.panel.conftest import make_operation, make_service

pytestmark = pytest.mark.django_db


def post(client, service, action, **data):
    return client.post(reverse("panel:resource_action", args=[service.pk, action]), data)


def finish(operation: Operation, *, completed: bool = True) -> None:
    """What the workflow does when the operation ends (its kind's hook, in one transaction)."""
    kind = get_kind(operation.kind)
    hook = kind.on_completed if completed else kind.on_rolled_back
    if hook is not None:
        hook(operation.service, operation)
    Operation.objects.filter(pk=operation.pk).update(
        state="completed" if completed else "rolled_back"
    )


@pytest.fixture
def cron_plan(db):
    return PlanFactory.create(name="Cron", slug="cron-plan", cron_jobs=2)


def test_a_job_added_in_the_panel_starts_cron_ensure_and_shows_on_the_page(
    client, owner, customer, cron_plan, node
):
    # given an active service whose plan includes two cron jobs
    service = make_service(customer, cron_plan, node)
    client.force_login(owner)
    # when the owner adds a job with mailed output and no address
    response = post(client, service, "cron-add", schedule=" */15  * * * * ",
                    command="php public_html/cron.php", output="mailed", enabled="on")  # fmt: skip
    # then a cron_ensure operation carries the checked values, mailed to the owner
    assert response.status_code == 302
    job = CronJob.objects.get(service=service)
    assert (job.schedule, job.mail_to, job.state) == ("*/15 * * * *", owner.email, "pending")
    op = Operation.objects.get(service=service, kind="cron_ensure")
    assert op.params == {
        "job_id": job.pk,
        "schedule": "*/15 * * * *",
        "command": "php public_html/cron.php",
        "output": "mailed",
        "mail_to": owner.email,
        "enabled": True,
        "previous": None,
    }
    # and once it completed the job is listed as on, with the cron log among the logs
    finish(op)
    job.refresh_from_db()
    assert job.state == "active"
    page = client.get(reverse("panel:service", args=[service.pk])).content.decode()
    assert "php public_html/cron.php" in page and "Cron log" in page


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"schedule": "61 * * * *", "command": "true"}, "schedule", "out of range"),
        ({"schedule": "* * * *", "command": "true"}, "schedule", "five fields"),
        ({"schedule": "@reboot", "command": "true"}, "schedule", "five fields"),
        ({"schedule": "@daily", "command": "caf\u00e9"}, "command", "plain ASCII"),
        ({"schedule": "@daily", "command": "x" * 1001}, "command", "1000 characters"),
    ],
)
def test_bad_jobs_are_refused_next_to_their_field_and_start_nothing(
    client, owner, customer, cron_plan, node, data, field, text
):
    service = make_service(customer, cron_plan, node)
    client.force_login(owner)
    response = post(client, service, "cron-add", output="logged", **data)
    assert response.status_code == 400
    form = response.context["cron_form"]
    assert any(text in e for e in form.errors[field]), form.errors
    assert not CronJob.objects.exists() and not Operation.objects.exists()


def test_the_plan_caps_the_number_of_jobs(owner, customer, cron_plan, node):
    service = make_service(customer, cron_plan, node)
    for n in range(2):
        op = cron.cron_job_save(service=service, schedule="@daily", command=f"echo {n}")
        finish(op)
    with pytest.raises(ProvisioningRefused, match="includes 2 cron jobs"):
        cron.cron_job_save(service=service, schedule="@daily", command="echo 3")
    assert CronJob.objects.filter(service=service).count() == 2


def test_an_edit_rolled_back_puts_the_job_back_and_a_new_one_rolled_back_goes(
    customer, cron_plan, node
):
    service = make_service(customer, cron_plan, node)
    first = cron.cron_job_save(service=service, schedule="@daily", command="echo one")
    finish(first)
    job = CronJob.objects.get(service=service)
    # when an edit is rolled back, then the row is as it was
    edit = cron.cron_job_save(
        service=service, job=job, schedule="@hourly", command="echo two", enabled=False
    )
    assert edit.params["previous"]["command"] == "echo one"
    finish(edit, completed=False)
    job.refresh_from_db()
    assert (job.schedule, job.command, job.enabled, job.state) == (
        "@daily", "echo one", True, "active",
    )  # fmt: skip
    # when a new job's operation is rolled back, then its row goes
    added = cron.cron_job_save(service=service, schedule="@weekly", command="echo three")
    finish(added, completed=False)
    assert list(CronJob.objects.filter(service=service)) == [job]
    # when a removal completes, then the row goes
    finish(cron.cron_job_delete(service=service, job=job))
    assert not CronJob.objects.filter(service=service).exists()


def test_another_accounts_job_cannot_be_changed_or_removed(
    client, owner, customer, cron_plan, node
):
    mine = make_service(customer, cron_plan, node)
    other = make_service(customer, cron_plan, node)
    finish(cron.cron_job_save(service=other, schedule="@daily", command="echo theirs"))
    job = CronJob.objects.get(service=other)
    client.force_login(owner)
    for action, data in (
        ("cron-edit", {"job": job.pk, "schedule": "@hourly", "command": "id", "output": "logged"}),
        ("cron-delete", {"job": job.pk}),
    ):
        response = post(client, mine, action, **data)
        assert response.status_code == 302
    assert not Operation.objects.filter(service=mine).exists()
    job.refresh_from_db()
    assert job.command == "echo theirs"


def test_no_cron_changes_while_suspended(client, owner, customer, cron_plan, node):
    service = make_service(customer, cron_plan, node, state="suspended")
    make_operation(service)
    client.force_login(owner)
    post(client, service, "cron-add", schedule="@daily", command="true", output="logged")
    assert not CronJob.objects.exists()


def test_the_customer_api_lists_adds_changes_and_removes_jobs(
    client: Client, owner, customer, stranger, cron_plan, node
):
    service = make_service(customer, cron_plan, node)
    token = api_token_create(customer=customer, user=owner, name="w", scope="write").secret
    read = api_token_create(customer=customer, user=owner, name="r").secret
    base = f"/api/v1/services/{service.pk}/cron-jobs"

    def call(path: str, body: object | None = None, secret: str = token):
        headers = {"Authorization": f"Bearer {secret}"}
        if body is None:
            return client.get(path, headers=headers)
        return client.post(path, body, content_type="application/json", headers=headers)

    # when a job is added, then it is queued as an operation and listed as pending
    added = call(f"{base}/", {"schedule": "0 3 * * *", "command": "php cron.php"})
    assert added.status_code == 202, added.content
    assert added.json()["kind"] == "cron_ensure"
    (listed,) = call(f"{base}/").json()
    assert listed["schedule"] == "0 3 * * *" and listed["state"] == "pending"
    finish(Operation.objects.get(pk=added.json()["id"]))
    # and bad input or an unknown field queues nothing
    for body in ({"schedule": "bad", "command": "x"}, {"schedule": "@daily", "command": "x",
                                                       "user": "root"}):  # fmt: skip
        assert call(f"{base}/", body).status_code == 400
    # when it is changed and removed, each is an operation on that job
    changed = call(f"{base}/update/", {"job": listed["id"], "schedule": "@hourly", "command": "x"})
    assert changed.status_code == 202, changed.content
    finish(Operation.objects.get(pk=changed.json()["id"]))
    removed = call(f"{base}/delete/", {"job": listed["id"]})
    assert removed.status_code == 202 and removed.json()["kind"] == "cron_remove"
    # and a read token, or a job id of nobody's, changes nothing
    assert call(f"{base}/", {"schedule": "@daily", "command": "x"}, secret=read).status_code == 403
    finish(Operation.objects.get(pk=removed.json()["id"]))
    assert call(f"{base}/delete/", {"job": listed["id"]}).status_code == 404
    assert call(f"{base}/").json() == []
