"""A hosting account's whole life on the real node, driven by a real Celery worker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioning import services
from provisioning.models import Operation, Service, StepRun
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, node_leftovers, unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WHOAMI = "<?php echo posix_getpwuid(posix_geteuid())['name'];\n"
CGROUP = "<?php echo file_get_contents('/proc/self/cgroup');\n"


def _service(pk: int) -> Service:
    return Service.objects.select_related("node").get(pk=pk)


def test_create_suspend_unsuspend_terminate_on_the_node(worker, hosting_node):
    # given a customer ordering a plan for a domain
    customer = CustomerFactory.create(name="Erin End-to-end")
    plan = PlanFactory.create(php_workers=2, memory_mb=256, cpu_percent=50, processes=40)

    # when the order is placed and the worker runs the create chain
    domain = unique_domain("erin-e2e")
    service = services.service_order(customer=customer, plan=plan, domain=domain)
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE))

    # then the operation completed through every state and the account is live on the node
    assert create.state == Operation.State.COMPLETED, create.reason
    states = [e.to_state for e in create.events.order_by("at", "id")]
    assert states == ["queued", "validating", "provisioning", "configuring", "completed"]
    service = _service(service.pk)
    assert service.state == Service.State.ACTIVE
    assert service.disk_used_mb is not None
    user = service.username
    assert user.startswith("hwt")
    status, body = http_get(domain)
    assert status == 200 and domain in body
    assert http_get(f"www.{domain}")[0] == 200
    # and PHP runs as the account's own Linux user
    subprocess.run(
        [
            "install",
            "-o",
            user,
            "-g",
            user,
            "-m",
            "0644",
            "/dev/stdin",
            f"/home/{user}/public_html/whoami.php",
        ],
        input=WHOAMI,
        text=True,
        check=True,
    )
    assert http_get(domain, "/whoami.php") == (200, user)
    # and its PHP workers run inside the account's cgroups (where the node has cgroup v1)
    if Path(f"/sys/fs/cgroup/pids/hostwright/{user}").exists():
        subprocess.run(
            ["install", "-o", user, "-g", user, "-m", "0644", "/dev/stdin",
             f"/home/{user}/public_html/cgroup.php"],
            input=CGROUP, text=True, check=True,
        )  # fmt: skip
        status, body = http_get(domain, "/cgroup.php")
        assert status == 200 and f":pids:/hostwright/{user}" in body, body
        limit = Path(f"/sys/fs/cgroup/pids/hostwright/{user}/pids.max").read_text().strip()
        assert limit == "40"
    # and every step recorded its commands with exit codes and durations
    runs = StepRun.objects.filter(operation=create)
    assert {r.step for r in runs} == {
        "validate",
        "linux_user",
        "limits",
        "php_pool",
        "database",
        "dns_zone",
        "mail_domain",
        "dkim_key",
        "nginx_site",
        "verify_dns",
        "measure_disk",
    }
    assert all(r.status == StepRun.Status.SUCCEEDED and r.commands for r in runs)
    assert all({"cmd", "exit", "ms"} <= set(c) for r in runs for c in r.commands)
    # and the account's database works, over the socket and over TCP, while its password
    # never reached the records
    my_cnf = subprocess.run(
        ["cat", f"/home/{user}/.my.cnf"], capture_output=True, text=True, check=True
    ).stdout
    password = next(line.split("=", 1)[1] for line in my_cnf.splitlines() if "password=" in line)
    query = subprocess.run(
        ["runuser", "-u", user, "--", "mysql", "-N", "-B", "-e", "SELECT DATABASE()"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert query.stdout.strip() == f"{user}_main", query.stderr
    tcp = subprocess.run(
        ["mysql", "-h", "127.0.0.1", "-u", user, "-N", "-B", "-e", "SELECT 1"],
        capture_output=True,
        text=True,
        env={**os.environ, "MYSQL_PWD": password},
    )
    assert tcp.stdout.strip() == "1", tcp.stderr
    recorded = " ".join(
        f"{c['cmd']} {r.stdout_tail} {r.stderr_tail}" for r in runs for c in r.commands
    )
    # (the password is made on the node and never travels: it is in no record at all)
    assert password not in recorded

    # when it is suspended for non-payment
    suspend = services.service_suspend(service=service, reason="non_payment")
    assert suspend is not None
    suspend = wait_for_operation(suspend)

    # then the site shows the suspended page, the pool is gone and logins are locked
    assert suspend.state == Operation.State.COMPLETED, suspend.reason
    assert _service(service.pk).state == Service.State.SUSPENDED
    status, body = http_get(domain)
    assert status == 503 and "suspended" in body
    assert http_get(domain, "/whoami.php")[0] == 503
    passwd = subprocess.run(["getent", "passwd", user], capture_output=True, text=True).stdout
    assert passwd.strip().endswith(":/usr/sbin/nologin")
    assert subprocess.run(["test", "-e", f"/run/php/hw-{user}.sock"]).returncode != 0

    # when the reason is lifted
    unsuspend = services.service_unsuspend(service=_service(service.pk), reason="non_payment")
    assert unsuspend is not None
    unsuspend = wait_for_operation(unsuspend)

    # then everything is back
    assert unsuspend.state == Operation.State.COMPLETED, unsuspend.reason
    assert _service(service.pk).state == Service.State.ACTIVE
    assert http_get(domain, "/whoami.php") == (200, user)
    # (its plan grants no shell: it never had one)
    passwd = subprocess.run(["getent", "passwd", user], capture_output=True, text=True).stdout
    assert passwd.strip().endswith(":/usr/sbin/nologin")

    # when it is terminated
    terminate = wait_for_operation(services.service_terminate(service=_service(service.pk)))

    # then nothing of it is left on the node and the name is no longer served
    assert terminate.state == Operation.State.COMPLETED, terminate.reason
    assert _service(service.pk).state == Service.State.TERMINATED
    assert node_leftovers(user) == []
    assert http_get(domain)[0] == 404
