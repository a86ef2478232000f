"""Time per hosting account: the provisioning engine against the floor, serially and at once.

Bootstraps this machine as a node on loopback (root; parts 10-50), starts a Celery worker
on a benchmark database (PostgreSQL) and Redis, then in one run:

- engine, serial: orders accounts one after the other; each is timed from the order to its
  create operation completed (Celery chain, one SSH script per step, events, step runs).
  The operation runs the web-account steps of ``create`` (``bench/lib/provision_kind.py``): the
  DNS and mail steps added to ``create`` have node commands the floor does not contain;
- floor: the same node work for an account (user, docroot, limits, PHP-FPM pool with its
  check and reload, the database and its user with the credentials file, nginx server block
  with its check and reload, disk usage): the node agent actions the steps send, as ONE
  request over one already-open SSH connection (no root shell: the panel's keys run only the
  agent, and the floor needs nothing else);
- engine, concurrent: orders a batch at once on a worker with 4 processes: accounts/minute.

All accounts are removed afterwards (terminate operations, and one agent request for each of
the floor's).

    .venv/bin/python bench/provision.py [--quick]

Last line: BENCH provision engine_ms=... floor_ms=... ratio=... concurrent_per_min=...
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lib.worker import stop_worker  # noqa: E402  (after the path is set)

DB_NAME = "hw_bench_provision"
PREFIX = "hwb"
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    # The caller's own Redis databases when it has them: a fixed pair may be another
    # process's broker on a shared machine, whose workers would take this run's tasks.
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"),
    "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3"),
    "HOSTING_VAR_DIR": str(ROOT / "var" / "bench-provision"),
    "PROVISIONING_SSH_KEY": str(ROOT / "var" / "bench-provision" / "id_ed25519"),
    "PROVISIONING_USER_PREFIX": PREFIX,
    "LOG_LEVEL": "WARNING",
}


def prepare() -> None:
    from bench.lib.database import fresh_database

    fresh_database(DB_NAME, ENV)
    subprocess.run(
        [sys.executable, "manage.py", "node_local_setup", "--name", "bench",
         "--parts", "10 15 20 30 40 50"],
        cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    os.environ.update(ENV)
    import django

    django.setup()


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    from bench.lib import worker

    return worker.start_worker(
        f"bench{os.getpid()}@localhost", concurrency, ENV, include=["bench.lib.provision_kind"]
    )


def wait_all(op_ids: list[int], timeout: float = 300) -> None:
    from provisioning.models import Operation

    deadline = time.monotonic() + timeout
    while True:
        states = list(Operation.objects.filter(pk__in=op_ids).values_list("state", flat=True))
        if all(s in Operation.FINAL_STATES for s in states):
            failed = Operation.objects.filter(pk__in=op_ids).exclude(state="completed")
            if failed.exists():
                raise SystemExit(f"operations did not complete: {[o.reason for o in failed]}")
            return
        if time.monotonic() > deadline:
            raise SystemExit("operations did not finish in time")
        time.sleep(0.01)


def order(customer, plan, label: str) -> int:
    """Order an account whose create runs the web-account steps only (see provision_kind)."""
    from django.db import transaction

    from bench.lib.provision_kind import KIND
    from provisioning import services

    with transaction.atomic():
        service = services.service_order(
            customer=customer, plan=plan, domain=f"{label}-{secrets.token_hex(3)}.bench.example"
        )
        # Before commit, so the chain is queued for this kind.
        service.operations.update(kind=KIND)
    return service.operations.get().pk


def floor_actions(user: str, domain: str, plan) -> list:
    """The node agent actions of one account as the steps send them, minus the engine."""
    from provisioning.ssh import action
    from provisioning.steps import hosting as h

    owner = "hostwright service 999999999"
    return [
        action("node.check"),
        action("user.ensure", user=user, owner=owner, login_shell=False,
               welcome_html=h.welcome_page(domain)),
        action("limits.set", user=user, cpu_percent=plan.cpu_percent, memory_mb=plan.memory_mb,
               processes=plan.processes),
        action("pool.ensure", user=user, workers=plan.php_workers, memory_mb=plan.memory_mb),
        action("db.account_ensure", account=user, user=user, name=f"{user}_main"),
        action("site.ensure", user=user, service=999999999, domain=domain, ip="",
               suspended=False),
        action("usage.measure", users=[user], month=""),
    ]  # fmt: skip


def floor_cleanup(user: str) -> list:
    from provisioning.ssh import action

    owner = "hostwright service 999999999"
    return [
        action("site.remove", user=user),
        action("pool.remove", user=user),
        action("db.account_remove", account=user, user=user, name=f"{user}_main"),
        action("user.remove", user=user, owner=owner),
        action("limits.remove", user=user),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/provision.py needs root: it turns this machine into a node")
    serial_n, batch_n = (4, 8) if args.quick else (20, 32)

    prepare()
    from django.conf import settings

    from billing.models import Plan, Product
    from provisioning import nodes, services, ssh
    from provisioning.models import Node, Operation, Service
    from tests.factories import CustomerFactory

    node = Node.objects.get(name="bench")
    Node.objects.filter(pk=node.pk).update(capacity_accounts=1_000_000)
    product = Product.objects.create(name="Shared", slug="shared")
    plan = Plan.objects.create(product=product, name="Bench", slug="bench", disk_mb=100,
                               bandwidth_gb=1, php_workers=2)  # fmt: skip
    customer = CustomerFactory.create()
    worker = start_worker(4)
    try:
        # Warm up: the worker processes open their SSH connections once.
        warm = [order(customer, plan, "warm") for _ in range(2)]
        wait_all(warm)

        engine_ms = []
        for i in range(serial_n):
            op_id = order(customer, plan, f"serial{i}")
            wait_all([op_id])
            op = Operation.objects.get(pk=op_id)
            assert op.finished_at is not None
            engine_ms.append((op.finished_at - op.created_at).total_seconds() * 1000)

        target = nodes.node_target(node)
        key, timeout = settings.PROVISIONING_SSH_KEY, 120
        # connect first
        ssh.call(target, [ssh.action("node.ping")], key_path=key, timeout=timeout)
        floor_ms = []
        for i in range(serial_n):
            user = f"{PREFIX}floor{i}{secrets.token_hex(2)}"
            domain = f"floor{i}.bench.example"
            started = time.perf_counter()
            answer = ssh.call(target, floor_actions(user, domain, plan), key_path=key,
                              timeout=timeout)  # fmt: skip
            floor_ms.append((time.perf_counter() - started) * 1000)
            assert answer.ok, answer.failure()
            ssh.call(target, floor_cleanup(user), key_path=key, timeout=timeout)

        started = time.perf_counter()
        batch = [order(customer, plan, f"batch{i}") for i in range(batch_n)]
        wait_all(batch)
        per_min = batch_n / (time.perf_counter() - started) * 60

        terminations = [
            services.service_terminate(service=s).pk
            for s in Service.objects.filter(state=Service.State.ACTIVE)
        ]
        wait_all(terminations)
    finally:
        stop_worker(worker)

    engine, floor = statistics.median(engine_ms), statistics.median(floor_ms)
    print(f"engine per account (median of {serial_n}): {engine:.0f} ms")
    print(f"floor, one request over one connection:   {floor:.0f} ms")
    print(f"concurrent ({batch_n} accounts, 4 worker processes): {per_min:.0f} accounts/min")
    print(
        f"BENCH provision engine_ms={engine:.0f} floor_ms={floor:.0f} "
        f"ratio={engine / floor:.2f} concurrent_per_min={per_min:.0f}"
    )


if __name__ == "__main__":
    main()
