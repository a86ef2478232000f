"""Faults on the real node: every operation ends completed or rolled back, nothing left over."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest
from django.db import transaction

from provisioning import nodes, services, ssh
from provisioning.models import Node, Operation, Service, StepRun
from provisioning.steps.base import get_kind
from provisioning.workflow import operations_sweep
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import ROOT, http_get, node_leftovers, unique_domain, wait_for_operation

pytestmark = [
    pytest.mark.node,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    # (accounts a test leaves up are terminated: no zone or mail domain stays on the node)
    pytest.mark.usefixtures("services_terminated_after"),
]

CREATE_STEPS = [s.name for s in get_kind("create").steps]
SITES = Path("/etc/nginx/hostwright/sites")


def order(label: str, *, failpoint: dict | None = None) -> Service:
    """Place an order; with a failpoint, set it on the create operation before it is queued."""
    domain = unique_domain(label.removesuffix(".example"))
    customer = CustomerFactory.create()
    plan = PlanFactory.create(php_workers=2)
    with transaction.atomic():
        service = services.service_order(customer=customer, plan=plan, domain=domain)
        if failpoint:
            Operation.objects.filter(service=service).update(params={"failpoint": failpoint})
    return service


def create_of(service: Service) -> Operation:
    return wait_for_operation(service.operations.get(kind="create"))


def wait_for_running_step(operation: Operation, step: str) -> None:
    deadline = time.monotonic() + 60
    while not StepRun.objects.filter(
        operation=operation, step=step, status=StepRun.Status.RUNNING
    ).exists():
        assert time.monotonic() < deadline, f"step {step} never started"
        time.sleep(0.1)
    time.sleep(0.5)  # let its script reach the node


def wait_for_lock_waiter(lock: str, limit: float = 60.0) -> None:
    """Wait until a process other than this one has the lock file open (it waits for it)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            if fd_dir.parent.name == str(os.getpid()):
                continue
            try:
                if any(os.readlink(fd) == lock for fd in fd_dir.iterdir()):
                    return
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"nothing on the node waited for {lock}")


class NginxLock:
    """Hold the node's nginx configuration lock, as a concurrent change would."""

    def __enter__(self):
        Path("/run/hostwright").mkdir(exist_ok=True)
        self.fd = os.open("/run/hostwright/nginx.lock", os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", CREATE_STEPS)
def test_a_step_failing_at_any_position_rolls_back_everything(worker, hosting_node, step, when):
    # given an order whose create chain fails at this step, before or after its work
    service = order(
        f"fail-{step.replace('_', '-')}.example", failpoint={"step": step, "when": when}
    )

    # when the worker runs it
    op = create_of(service)

    # then the operation is rolled back, its error naming the step for staff and its reason
    # in the customer's words, the service failed
    assert op.state == Operation.State.ROLLED_BACK
    assert f"Step {step} failed" in op.error and "undone" in op.reason
    assert Service.objects.get(pk=service.pk).state == Service.State.FAILED
    # and the undo ran for every step that had run, last first
    undone = list(
        StepRun.objects.filter(operation=op, direction="undo", status="succeeded")
        .order_by("started_at", "id")
        .values_list("position", flat=True)
    )
    position = CREATE_STEPS.index(step)
    assert undone == list(range(position, -1, -1))
    # and the node holds nothing of the account
    assert node_leftovers(service.username) == []


def test_nginx_check_failing_keeps_the_web_server_up_and_rolls_back(worker, hosting_node):
    # given another account being served, and a broken file in the node's nginx configuration
    live = order("still-served.example")
    assert create_of(live).state == Operation.State.COMPLETED
    broken = SITES / "zz-hwt-broken.conf"
    broken.write_text("this is not an nginx directive;\n")
    try:
        # when a new account is created
        service = order("nginx-broken.example")
        op = create_of(service)
    finally:
        broken.unlink()

    # then its nginx step failed on the check, and everything was undone
    assert op.state == Operation.State.ROLLED_BACK
    assert "nginx_site" in op.error and "refused the new configuration" in op.error
    assert node_leftovers(service.username) == []
    # and nginx never took the bad configuration: the other site is still served
    assert http_get(live.domain)[0] == 200


def test_mariadb_down_rolls_back_after_retries(worker, hosting_node):
    # given MariaDB stopped on the node
    subprocess.run(["mysqladmin", "--protocol=socket", "-uroot", "shutdown"], check=True)
    try:
        # when an account is created
        service = order("mariadb-down.example")
        op = create_of(service)
    finally:
        env = {**os.environ, "HW_NODE_LIB": str(ROOT / "deploy/node/lib.sh")}
        subprocess.run(["bash", str(ROOT / "deploy/node/parts/50-mariadb.sh")], env=env, check=True)

    # then the database step was retried, failed cleanly, and everything before it was undone
    assert op.state == Operation.State.ROLLED_BACK
    assert "database failed after 3 attempts" in op.error and "not answering" in op.error
    attempts = StepRun.objects.filter(operation=op, step="database", direction="apply")
    assert attempts.count() == 3 and all(a.nothing_changed for a in attempts)
    assert node_leftovers(service.username) == []


def test_ssh_connection_dropped_mid_step_is_retried_without_duplicates(worker, hosting_node):
    with NginxLock():
        # given a create operation whose nginx step waits for the configuration lock
        service = order("ssh-dropped.example")
        op = service.operations.get()
        wait_for_running_step(op, "nginx_site")
        # (and the node is inside that step, waiting for the lock: the request was sent)
        wait_for_lock_waiter("/run/hostwright/nginx.lock")
        # when every SSH connection to the node is cut
        sshd = int(Path("/run/hostwright/sshd-2222.pid").read_text())
        subprocess.run(["pkill", "-KILL", "-P", str(sshd)], check=False)
    op = wait_for_operation(op)

    # then the request was sent again (the client resends an idempotent batch once on a new
    # connection; a second cut makes the step's own retry do it) and the operation completed
    assert op.state == Operation.State.COMPLETED, op.reason
    runs = list(StepRun.objects.filter(operation=op, step="nginx_site").order_by("attempt"))
    assert runs[-1].status == StepRun.Status.SUCCEEDED
    for lost in runs[:-1]:
        assert lost.status == StepRun.Status.FAILED
        assert "outcome is unknown" in lost.error or "closed" in lost.error
    # and the node holds one site block, one pool and one user for it
    user = Service.objects.get(pk=service.pk).username
    assert len(list(SITES.glob(f"{user}.conf*"))) == 1
    assert http_get(Service.objects.get(pk=service.pk).domain)[0] == 200


def test_worker_killed_mid_step_is_resumed_by_the_sweeper(worker, hosting_node):
    with NginxLock():
        # given a create operation in the middle of its nginx step
        service = order("worker-killed.example")
        op = service.operations.get()
        wait_for_running_step(op, "nginx_site")
        # when the worker is SIGKILLed
        worker.kill()
    # and the sweeper finds the operation that stopped moving, with a worker to resume it
    worker.ensure()
    counts = operations_sweep(stale_after=0)
    op = wait_for_operation(op)

    # then the operation completed, the lost attempt is on record, and nothing is duplicated
    assert counts["resumed"] == 1
    assert op.state == Operation.State.COMPLETED, op.reason
    assert op.events.filter(actor_label="sweeper").exists()
    lost = StepRun.objects.filter(operation=op, step="nginx_site").order_by("attempt")[0]
    assert "worker stopped" in lost.error
    user = Service.objects.get(pk=service.pk).username
    assert len(list(SITES.glob(f"{user}.conf*"))) == 1
    assert subprocess.run(["getent", "passwd", user], capture_output=True).returncode == 0
    assert http_get(Service.objects.get(pk=service.pk).domain)[0] == 200


def test_changed_host_key_pauses_the_work_until_staff_pin_the_new_key(worker, hosting_node):
    # given the node presenting a different key than the pinned one (a reinstalled server)
    pinned = Node.objects.get(pk=hosting_node.pk).host_key
    other = ssh.host_key_text(
        ssh.paramiko.Ed25519Key.from_private_key_file(str(ROOT / "var/test-node/id_ed25519"))
    )
    Node.objects.filter(pk=hosting_node.pk).update(host_key=other)
    try:
        # when an account is ordered
        service = order("host-key.example")
        op = service.operations.get(kind="create")

        # then nothing is sent: the node is flagged with the key it presents, and the
        # operation waits (not failed, nothing undone, nothing on the node)
        presented = ssh.fingerprint(ssh.fetch_host_key("127.0.0.1", hosting_node.port))
        deadline = time.monotonic() + 120
        while True:
            health = Node.objects.get(pk=hosting_node.pk).health or {}
            error = (health.get("breaker") or {}).get("last_error", "")
            if "does not match the pinned key" in error:
                break
            assert time.monotonic() < deadline, f"node never flagged: {health}"
            time.sleep(0.2)
        assert presented in error
        op = Operation.objects.get(pk=op.pk)
        assert op.state in Operation.RUNNING_STATES and op.state != Operation.State.ROLLING_BACK
        assert not StepRun.objects.filter(operation=op, direction="undo").exists()
        assert node_leftovers(service.username) == []
    finally:
        Node.objects.filter(pk=hosting_node.pk).update(host_key=pinned)

    # and once staff pin the key the node presents, the waiting create finishes
    nodes.node_repin(node=Node.objects.get(pk=hosting_node.pk))
    assert wait_for_operation(op, timeout=300).state == Operation.State.COMPLETED


def test_suspended_for_two_reasons_stays_suspended_until_both_are_lifted(worker, hosting_node):
    # given an active account suspended for non-payment and for abuse
    service = order("two-reasons.example")
    assert create_of(service).state == Operation.State.COMPLETED
    suspend = services.service_suspend(service=service, reason="non_payment")
    assert services.service_suspend(service=service, reason="abuse") is None
    assert wait_for_operation(suspend).state == Operation.State.COMPLETED

    # when the payment arrives
    lifted = services.service_unsuspend(service=service, reason="non_payment")

    # then it stays suspended for abuse, and the page says so
    assert lifted is None
    service.refresh_from_db(fields=["suspension_reasons"])
    assert service.suspension_reasons == ["abuse"]
    assert http_get(service.domain)[0] == 503
    # and once abuse is cleared too, it is back
    op = services.service_unsuspend(service=service, reason="abuse")
    assert wait_for_operation(op).state == Operation.State.COMPLETED
    assert http_get(service.domain)[0] == 200
