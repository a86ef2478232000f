"""The node lab: how fast three Debian 12 nodes come up, and accounts placed on them at once.

Boots the lab from its cached template (``tests/lab/lab.py``; the first run on a machine builds
the template, several minutes), runs the node bootstrap on each node over SSH, adds them to a
benchmark database (PostgreSQL) with their host keys pinned, starts a Celery worker, and then:

- places a batch of accounts at once over the three nodes (fewest-accounts policy), each
  account's whole create operation (user, limits, PHP-FPM pool, database, DNS zone, mail
  domain, nginx site, DNS check): accounts per minute;
- one account moved to another node by the engine (``move``: built on the new node, a first
  copy, the freeze, the final copy, the check, the DNS switch, the old node cleaned):
  ``move_s`` from the request to the operation's end, ``move_downtime_s`` the site's frozen
  window the operation recorded;
- the floor of that move: the same account's files (its home with 20 MB of data) and its
  database (20000 rows) copied by hand between the same two nodes in the same run (tar over
  SSH and mysqldump into mysql), ``move_floor_s``.

The lab is torn down at the end.

    .venv/bin/python bench/lab.py [--quick]

Last line: BENCH lab nodes=3 boot_s=... bootstrap_s=... accounts_per_min=... move_s=...
move_downtime_s=... move_floor_s=...
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lib.worker import stop_worker  # noqa: E402  (after the path is set)

DB_NAME = "hw_bench_lab"
PREFIX = "hwl"
VAR = ROOT / "var" / "bench-lab"
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    # A broker of its own on a socket (started below): the shared Redis's databases are all
    # some test session's, and a shared queue would hand this run's tasks to another worker.
    "REDIS_URL": "",
    "CELERY_BROKER_URL": f"redis+socket://{VAR / 'redis' / 'redis.sock'}",
    "HOSTING_VAR_DIR": str(VAR),
    "PROVISIONING_SSH_KEY": str(VAR / "id_ed25519"),
    "PROVISIONING_USER_PREFIX": PREFIX,
    "LOG_LEVEL": "WARNING",
}


def start_broker() -> subprocess.Popen[bytes]:
    redis_dir = VAR / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    (redis_dir / "redis.sock").unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(redis_dir / "redis.sock"),
         "--unixsocketperm", "700", "--dir", str(redis_dir), "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--logfile", str(redis_dir / "redis.log")],
        start_new_session=True,
    )  # fmt: skip
    for _ in range(100):
        if (redis_dir / "redis.sock").exists():
            return proc
        time.sleep(0.05)
    raise SystemExit("the benchmark's redis-server did not start")


def prepare() -> None:
    from bench.lib.database import fresh_database

    fresh_database(DB_NAME, ENV)
    os.environ.update(ENV)
    import django

    django.setup()


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    from bench.lib import worker

    return worker.start_worker(f"benchlab{os.getpid()}@localhost", concurrency, ENV)


def wait_all(op_ids: list[int], timeout: float = 600) -> None:
    from provisioning.models import Operation

    deadline = time.monotonic() + timeout
    while True:
        ops = Operation.objects.filter(pk__in=op_ids)
        if all(s in Operation.FINAL_STATES for s in ops.values_list("state", flat=True)):
            failed = ops.exclude(state="completed")
            if failed.exists():
                raise SystemExit(f"operations did not complete: {[o.reason for o in failed]}")
            return
        if time.monotonic() > deadline:
            raise SystemExit("operations did not finish in time")
        time.sleep(0.05)


def order(customer, plan, label: str) -> int:
    from provisioning import services

    service = services.service_order(
        customer=customer, plan=plan, domain=f"{label}-{secrets.token_hex(3)}.bench.example"
    )
    return service.operations.get().pk


def move_floor(lab, source, target, user: str) -> float:
    """Seconds to copy an account's home and database from one node to another by hand."""
    started = time.perf_counter()
    pack = lab.ssh(source, f"tar -C /home -cf - {user}", timeout=300)
    assert pack.returncode == 0, pack.stderr
    unpack = lab.ssh(target, "mkdir -p /home/floor && tar -C /home/floor -xf -", stdin=pack.stdout)
    assert unpack.returncode == 0, unpack.stderr
    dump = lab.ssh(source, f"mysqldump --single-transaction {user}_main", timeout=300)
    assert dump.returncode == 0, dump.stderr
    restore = lab.ssh(
        target,
        f"mysql -e 'CREATE DATABASE IF NOT EXISTS floor_{user}' && mysql floor_{user}",
        stdin=dump.stdout,
    )
    assert restore.returncode == 0, restore.stderr
    seconds = time.perf_counter() - started
    # The hand copy is only a measure: gone again before the engine moves the account.
    cleaned = lab.ssh(target, f"rm -rf /home/floor && mysql -e 'DROP DATABASE floor_{user}'")
    assert cleaned.returncode == 0, cleaned.stderr
    return seconds


def engine_move(service, target_row) -> tuple[float, float]:
    """Seconds for the engine to move the account, and the downtime it recorded."""
    from provisioning import services
    from provisioning.models import StepRun

    started = time.perf_counter()
    op = services.service_move(service=service, node=target_row)
    wait_all([op.pk], timeout=900)
    seconds = time.perf_counter() - started
    switch = StepRun.objects.get(operation=op, step="move_switch", status="succeeded")
    return seconds, float(switch.resources["downtime_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/lab.py needs root: it boots nodes with systemd-nspawn")
    batch_n = 6 if args.quick else 30

    broker = start_broker()
    prepare()
    from billing.models import Plan, Product
    from provisioning import nodes
    from provisioning.models import Node, NodeGroup, Service
    from tests.factories import CustomerFactory
    from tests.lab.lab import Lab

    pubkey = nodes.panel_public_key(create=True)
    lab = Lab.open()
    worker = None
    try:
        lab.up(panel_pubkey=pubkey)
        group = NodeGroup.objects.create(name="bench", policy=NodeGroup.Policy.FEWEST_ACCOUNTS)
        for node in lab.nodes:
            row = nodes.node_register(
                name=node.name, address=node.address, roles=["web", "db", "mail", "dns"],
                capacity_accounts=1000, shared_ips=[node.address], group=group.name,
            )  # fmt: skip
            assert row.host_key == node.host_key
        product = Product.objects.create(name="Shared", slug="shared")
        plan = Plan.objects.create(product=product, name="Bench", slug="bench", disk_mb=100,
                                   bandwidth_gb=1, php_workers=2)  # fmt: skip
        customer = CustomerFactory.create()
        worker = start_worker(3)
        # Warm up: one account per node, so every worker process has met every node.
        wait_all([order(customer, plan, "warm") for _ in lab.nodes])

        started = time.perf_counter()
        wait_all([order(customer, plan, f"batch{i}") for i in range(batch_n)])
        per_min = batch_n / (time.perf_counter() - started) * 60
        spread = sorted(
            Service.objects.filter(domain__startswith="batch").values_list("node__name", flat=True)
        )

        service = Service.objects.select_related("node").filter(domain__startswith="warm").first()
        assert service is not None and service.node is not None
        source = next(n for n in lab.nodes if n.name == service.node.name)
        target = next(n for n in lab.nodes if n is not source)
        user = service.username
        # Some data to carry: 20 MB of files and a table of 20000 rows.
        rows = (
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(100)); "
            'INSERT INTO t SELECT seq, REPEAT("x", 100) FROM seq_1_to_20000'
        )
        seeded = lab.ssh(
            source,
            f"cd / && runuser -u {user} -- sh -c 'head -c 20000000 /dev/urandom "
            f">/home/{user}/public_html/blob.bin' && mysql {user}_main -e '{rows}'",
        )
        assert seeded.returncode == 0, seeded.stderr
        floor_s = move_floor(lab, source, target, user)
        target_row = Node.objects.get(name=target.name)
        move_s, downtime_s = engine_move(service, target_row)
        moved = Service.objects.select_related("node").get(pk=service.pk)
        assert moved.node_id == target_row.pk
    finally:
        if worker is not None:
            stop_worker(worker)
        lab.close()
        broker.terminate()
        broker.wait(timeout=10)

    t = lab.timings
    boot_s = t.get("copy_s", 0) + t.get("boot_s", 0)
    print(f"template build: {t.get('template_build_s', 0):.0f} s (0 when cached)")
    print(f"3 nodes from the template to sshd answering: {boot_s:.1f} s")
    print(f"node bootstrap over SSH on the 3 nodes at once: {t['bootstrap_s']:.1f} s")
    print(f"{batch_n} accounts at once on 3 nodes: {per_min:.0f} accounts/min ({spread})")
    print(f"move floor (20 MB of files + 20000 rows, by hand): {floor_s:.1f} s")
    print(f"move by the engine (the same account): {move_s:.1f} s, downtime {downtime_s:.2f} s")
    print(
        f"BENCH lab nodes={len(lab.nodes)} boot_s={boot_s:.1f} "
        f"bootstrap_s={t['bootstrap_s']:.1f} accounts_per_min={per_min:.0f} "
        f"move_s={move_s:.2f} move_downtime_s={downtime_s:.2f} move_floor_s={floor_s:.2f}"
    )


if __name__ == "__main__":
    main()
