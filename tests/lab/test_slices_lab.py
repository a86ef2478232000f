"""Tenant isolation on a Debian 12 node with systemd: everything an account runs is in its slice.

The account's slice is ``user-<uid>.slice`` (the one logind gives the user's sessions) with the
plan's limits; its PHP-FPM master (``hostwright-php@<user>.service``), its cron jobs (a timer
and a service each) and its SFTP sessions (sshd's PAM session) run in it. The lab shows the
limits as configured, not as enforced: this machine keeps the cgroup controllers, so the nodes'
slices have none (the loopback node's tests check enforcement on cgroup v1). What the node can
count without controllers (CPU time, tasks) comes back as the account's usage.
"""

from __future__ import annotations

import time

import pytest

from provisioning import services
from provisioning.models import CronJob, Operation, Service
from provisioning.resources import cron as hwcron
from provisioning.resources import services as resources
from provisioning.usage import usage_collect_node
from tests.factories import CustomerFactory, PlanFactory
from tests.lab.lab import Lab
from tests.lab.test_lab import lab_http_get, on_node
from tests.node.harness import unique_domain, wait_for_operation

SLICE_LIMITS = "CPUQuotaPerSecUSec,MemoryHigh,MemoryMax,TasksMax,IOWeight"


def _show(lab: Lab, node: str, props: str, unit: str) -> dict[str, str]:
    shown = on_node(lab, node, f"systemctl show -p {props} {unit}")
    return dict(line.split("=", 1) for line in shown.split())


def _cgroups_of(lab: Lab, node: str, user: str, command: str) -> list[str]:
    """The cgroup (v2 line) of each of the account's processes named ``command``."""
    out = on_node(
        lab,
        node,
        f"for p in $(pgrep -u {user} -x {command}); do grep '^0::' /proc/$p/cgroup; done; true",
    )
    return [line.removeprefix("0::") for line in out.split()]


def _completed(operation: Operation, timeout: float = 180) -> Operation:
    done = wait_for_operation(operation, timeout=timeout)
    assert done.state == Operation.State.COMPLETED, f"{done.kind}: {done.reason} {done.error}"
    return done


@pytest.mark.lab
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_everything_an_account_runs_is_in_its_slice(worker, lab, lab_nodes):
    import paramiko

    # given an account built by the engine on a lab node
    customer = CustomerFactory.create(name="Sol Slice")
    plan = PlanFactory.create(
        php_workers=2, memory_mb=256, cpu_percent=50, processes=40, io_weight=300, cron_jobs=2
    )
    domain = unique_domain("sol-slice")
    service = services.service_order(customer=customer, plan=plan, domain=domain)
    _completed(service.operations.get(kind=Operation.Kind.CREATE), timeout=300)
    service = Service.objects.select_related("node").get(pk=service.pk)
    node, user = service.node, service.username
    assert node is not None
    uid = on_node(lab, node.name, f"id -u {user}").strip()
    account_slice = f"user-{uid}.slice"
    in_slice = f"/user.slice/{account_slice}/"

    # then the account's slice holds the plan's limits (as configured, see the docstring)
    assert _show(lab, node.name, SLICE_LIMITS, account_slice) == {
        "CPUQuotaPerSecUSec": "500ms",
        "MemoryHigh": str(256 * 2**20 * 9 // 10),
        "MemoryMax": str(256 * 2**20),
        "TasksMax": "40",
        "IOWeight": "300",
    }
    # and the account's PHP-FPM is a master of its own, running in that slice
    php = f"hostwright-php@{user}.service"
    shown = _show(lab, node.name, "ActiveState,ControlGroup,UnitFileState", php)
    assert shown["ActiveState"] == "active" and shown["UnitFileState"] == "enabled"
    assert shown["ControlGroup"] == f"{in_slice}{php}"
    # and the PHP workers serving the site are the account's, in the slice as well
    on_node(
        lab,
        node.name,
        f"install -o {user} -g {user} -m 0644 /dev/stdin /home/{user}/public_html/who.php "
        "<<'PHP'\n<?php echo posix_getpwuid(posix_geteuid())['name'];\nPHP",
    )
    assert lab_http_get(node.address, domain, "/who.php") == (200, user)
    workers = _cgroups_of(lab, node.name, user, "php-fpm8.2")
    assert workers and all(cg == f"{in_slice}{php}" for cg in workers), workers
    # and the shared PHP-FPM master has no pool of the account
    assert user not in on_node(lab, node.name, "ls /etc/php/8.2/fpm/pool.d/")

    # when the customer logs in over SFTP, then the session lands in the slice (pam_systemd)
    _completed(resources.sftp_enable(service=service, password="sftp-password-123"))
    transport = paramiko.Transport((node.address, 2022))
    try:
        transport.connect(username=user, password="sftp-password-123")
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None and "public_html" in client.listdir("/")
        sessions = _cgroups_of(lab, node.name, user, "sshd")
        assert sessions and all(
            cg.startswith(f"{in_slice}session-") and cg.endswith(".scope") for cg in sessions
        ), sessions
        client.close()
    finally:
        transport.close()
    # and PHP keeps running once the session is over and logind let the user go
    time.sleep(12)
    assert _show(lab, node.name, "ActiveState", php)["ActiveState"] == "active"

    # when the customer adds a cron job running every minute, with its output logged
    command = "id -un; grep '^0::' /proc/self/cgroup"
    _completed(hwcron.cron_job_save(service=service, schedule="* * * * *", command=command))
    job = CronJob.objects.get(service=service)
    assert job.state == CronJob.State.ACTIVE
    timer = f"hostwright-cron-{user}-{job.pk}.timer"
    assert _show(lab, node.name, "ActiveState", timer)["ActiveState"] == "active"
    # then within a minute it ran as the account's user, in the account's slice
    log = ""
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline and "ended, exit" not in log:
        time.sleep(3)
        log = on_node(lab, node.name, f"cat /var/log/hostwright/cron/{user}.log; true")
    assert f"\n{user}\n" in log, log
    assert f"0::{in_slice}hostwright-cron-{user}-{job.pk}.service" in log, log
    assert "ended, exit 0" in log

    # when the plan changes, then the slice has the new plan's limits
    bigger = PlanFactory.create(
        php_workers=3, memory_mb=512, cpu_percent=80, processes=60, io_weight=50, cron_jobs=2
    )
    _completed(services.service_change_plan(service=service, plan=bigger))
    assert _show(lab, node.name, SLICE_LIMITS, account_slice) == {
        "CPUQuotaPerSecUSec": "800ms",
        "MemoryHigh": str(512 * 2**20 * 9 // 10),
        "MemoryMax": str(512 * 2**20),
        "TasksMax": "60",
        "IOWeight": "50",
    }
    # and the PHP master still serves the site from the slice
    assert lab_http_get(node.address, domain, "/who.php") == (200, user)

    # when usage is collected, then the figures are the slice's own counters: CPU time and
    # tasks (memory and IO need controllers the lab's nodes do not have: unknown, not zero)
    assert usage_collect_node(node_id=node.pk) >= 1
    service = Service.objects.select_related("node").get(pk=service.pk)
    cpu = int(_show(lab, node.name, "CPUUsageNSec", account_slice)["CPUUsageNSec"])
    assert service.cpu_time_ns is not None and 0 < service.cpu_time_ns <= cpu
    assert service.tasks_used is not None and service.tasks_used >= 1
    assert service.io_read_bytes is None and service.memory_used_mb is None

    # when the job is removed, then its timer and service are gone from the node
    _completed(hwcron.cron_job_delete(service=service, job=job))
    assert not CronJob.objects.filter(pk=job.pk).exists()
    assert not on_node(lab, node.name, f"ls /etc/systemd/system | grep cron-{user}; true").strip()

    # when the account is terminated, then nothing of its slice, PHP or cron stays
    _completed(services.service_terminate(service=service))
    left = on_node(
        lab,
        node.name,
        f"ls /etc/systemd/system/{account_slice}.d /etc/hostwright/php-fpm "
        f"/etc/hostwright/cron 2>/dev/null; systemctl is-active {php}; true",
    )
    assert user not in left and "inactive" in left
