"""Plan changes, retries and the node commands against the real node."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from provisioning import services
from provisioning.models import Node, Operation, Service
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, node_leftovers, unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
def test_change_plan_applies_the_new_limits_on_the_node(worker, hosting_node):
    # given an active account on a small plan
    small = PlanFactory.create(php_workers=2, processes=40)
    service = services.service_order(
        customer=CustomerFactory.create(), plan=small, domain=unique_domain("grow")
    )
    assert wait_for_operation(service.operations.get()).state == Operation.State.COMPLETED
    service = Service.objects.get(pk=service.pk)
    user = service.username

    # when it moves to a bigger plan
    big = PlanFactory.create(
        php_workers=6, processes=120, mail_per_hour=2000, mail_per_hour_mailbox=300
    )
    op = wait_for_operation(services.service_change_plan(service=service, plan=big))

    # then the pool and the cgroup carry the new limits and the service is on the new plan
    assert op.state == Operation.State.COMPLETED, op.reason
    pool = Path(f"/etc/php/8.2/fpm/pool.d/hw-{user}.conf").read_text()
    assert "pm.max_children = 6" in pool
    pids = Path(f"/sys/fs/cgroup/pids/hostwright/{user}/pids.max")
    if pids.exists():
        assert pids.read_text().strip() == "120"
    assert Service.objects.get(pk=service.pk).plan == big
    assert http_get(service.domain)[0] == 200
    # and the node's mail policy sends by the new plan's hourly limits
    limits = Path("/etc/hostwright/mail/limits").read_text().splitlines()
    assert f"{service.domain} {user} 2000 300" in limits
    # (terminated: its zone and mail domain are not left on the shared node)
    done = wait_for_operation(
        services.service_terminate(service=Service.objects.get(pk=service.pk))
    )
    assert done.state == Operation.State.COMPLETED, done.reason


@pytest.mark.worker
def test_a_rolled_back_create_can_be_retried(worker, hosting_node):
    # given a create that failed at its nginx step and was rolled back
    with transaction.atomic():
        service = services.service_order(
            customer=CustomerFactory.create(),
            plan=PlanFactory.create(),
            domain=unique_domain("again"),
        )
        service.operations.update(params={"failpoint": {"step": "nginx_site"}})
    op = wait_for_operation(service.operations.get())
    assert op.state == Operation.State.ROLLED_BACK
    assert Service.objects.get(pk=service.pk).state == Service.State.FAILED

    # when staff fix the cause and retry it
    Operation.objects.filter(pk=op.pk).update(params={})
    op = wait_for_operation(services.operation_retry(operation=op))

    # then it completes and the site is live, with the earlier attempts still on record
    assert op.state == Operation.State.COMPLETED, op.reason
    assert Service.objects.get(pk=service.pk).state == Service.State.ACTIVE
    assert op.events.filter(detail="retry requested").exists()
    assert op.step_runs.filter(direction="undo").exists()
    assert http_get(service.domain)[0] == 200
    services.service_terminate(service=Service.objects.get(pk=service.pk))
    wait_for_operation(Operation.objects.filter(service=service).latest("pk"))
    assert node_leftovers(Service.objects.get(pk=service.pk).username) == []


def test_node_add_pins_the_key_and_reports_prerequisites(test_node):
    # when staff add the test node
    out = StringIO()
    call_command(
        "node_add", "web-test", test_node.address, "--port", str(test_node.port),
        "--shared-ip", "127.0.0.1", stdout=out,
    )  # fmt: skip

    # then its host key is pinned and every prerequisite is present
    node = Node.objects.get(name="web-test")
    assert node.host_key == test_node.host_key
    assert "pinned host key SHA256:" in out.getvalue()
    assert "all prerequisites present" in out.getvalue()
    assert node.health["ok"] is True and node.health["missing"] == []

    # when the pinned key differs from what the node presents
    other_key = " ".join(Path(f"{test_node.key_path}.pub").read_text().split()[:2])
    Node.objects.filter(pk=node.pk).update(host_key=other_key)
    # then adding it again is refused with both fingerprints, unless staff repin
    with pytest.raises(Exception, match="now presents host key SHA256:"):
        call_command("node_add", "web-test", test_node.address, "--port", str(test_node.port))
    call_command(
        "node_add", "web-test", test_node.address, "--port", str(test_node.port), "--repin",
        stdout=StringIO(),
    )  # fmt: skip
    assert Node.objects.get(pk=node.pk).host_key == test_node.host_key

    # and draining takes it out of placement
    call_command("node_drain", "web-test", stdout=StringIO())
    assert Node.objects.get(pk=node.pk).status == Node.Status.DRAINING
    call_command("node_check", "web-test", stdout=out)
