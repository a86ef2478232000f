"""A node filling up: what one more account, a reload and the memory cost as accounts pile up.

Fills one node with hosting accounts through the engine (``service_order``: the whole create
operation, on a real Celery worker), in steps (10, 100, 500, 1,000, 2,000; ``--quick``: 10,
100, 200). The node is a lab node (Debian 12 with systemd, ``tests/lab/lab.py``, one node, the
lab closed at the end) or, with ``--loopback``, this machine's loopback node (the test node's
key, ``var/test-node``; every account made here is terminated through the engine at the end).

The creates that fill the node up to a step run a few at a time; then, on a quiet worker, at
each step:

- ``add_ms``: one more account, from the order to its create operation completed (the median
  of ``--samples`` accounts added one after the other);
- ``nginx_ms`` / ``fpm_ms``: one configuration change of the oldest account as the engine
  sends it, with its check and reload: ``site.ensure`` with another content (the comment line
  only) and ``pool.ensure`` with another worker count (medians of 3);
- ``mem_kb``: the proportional memory (PSS) of the node's processes beyond the empty node, per
  account; PHP workers that requests start and that end when idle are left out. On a lab node
  every process of the node counts; on the loopback node (shared with others) only nginx and
  PHP-FPM;
- errors: the oldest account's site is asked for a static page and a PHP page, again and
  again, while those reloads run; anything but the expected answer is an error.

    .venv/bin/python bench/node_scale.py [--quick] [--loopback] [--sizes 10,100] [--samples 3]

Honours BENCH_DATABASE (default hw_bench_node_scale), REDIS_URL and CELERY_BROKER_URL.
Last line: BENCH node_scale accounts=... add_first_ms=... add_last_ms=... growth=...
mem_per_account_kb=... reload_ms=... errors_during_reload=... nginx_ms=... fpm_ms=...
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lib.worker import stop_worker  # noqa: E402  (after the path is set)

DB_NAME = os.environ.get("BENCH_DATABASE", "hw_bench_node_scale")
PREFIX = "hwn"
VAR = ROOT / "var" / "bench-node-scale"
TEST_NODE_KEY = ROOT / "var" / "test-node" / "id_ed25519"
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"),
    "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3"),
    "HOSTING_VAR_DIR": str(VAR),
    "PROVISIONING_SSH_KEY": str(VAR / "id_ed25519"),
    "PROVISIONING_USER_PREFIX": PREFIX,
    "PROVISIONING_COMMAND_TIMEOUT": "300",
    "LOG_LEVEL": "WARNING",
}
PROBE_PHP = "<?php echo 'probe ', getmypid();\n"
FULL_SIZES = [10, 100, 500, 1000, 2000]
QUICK_SIZES = [10, 100, 200]


def prepare() -> None:
    from bench.lib.database import fresh_database

    VAR.mkdir(parents=True, exist_ok=True)
    fresh_database(DB_NAME, ENV)
    os.environ.update(ENV)
    import django

    django.setup()


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    from bench.lib import worker

    return worker.start_worker(
        f"benchscale{os.getpid()}@localhost", concurrency, ENV, log=(VAR / "worker.log").open("ab")
    )


def check_done(op_ids: list[int]) -> list[int]:
    """The operations still running; a failed one stops the benchmark."""
    from provisioning.models import Operation

    rows = list(Operation.objects.filter(pk__in=op_ids).values_list("pk", "state", "reason"))
    failed = [(pk, reason) for pk, state, reason in rows if state in ("failed", "rolled_back")]
    if failed:
        raise SystemExit(f"operations did not complete: {failed[:5]}")
    return [pk for pk, state, _ in rows if state not in Operation.FINAL_STATES]


def wait_all(op_ids: list[int], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while check_done(op_ids):
        if time.monotonic() > deadline:
            raise SystemExit("operations did not finish in time")
        time.sleep(0.05)


def order(plan: Any, label: str) -> int:
    """One customer's account (a customer each: the node's load is many customers')."""
    from provisioning import services
    from tests.factories import CustomerFactory

    customer = CustomerFactory.create()
    service = services.service_order(
        customer=customer, plan=plan, domain=f"{label}-{secrets.token_hex(3)}.scale.example"
    )
    return service.operations.get().pk


def fill(plan: Any, count: int, window: int) -> float:
    """Order ``count`` accounts, ``window`` at most in flight; seconds it took."""
    started = time.monotonic()
    pending: list[int] = []
    ordered = 0
    while ordered < count or pending:
        while ordered < count and len(pending) < window:
            pending.append(order(plan, f"fill{ordered}"))
            ordered += 1
        time.sleep(0.2)
        pending = check_done(pending)
    return time.monotonic() - started


def add_one(plan: Any, label: str) -> float:
    """Milliseconds from the order to the create operation completed, on a quiet worker."""
    from provisioning.models import Operation

    op_id = order(plan, label)
    wait_all([op_id])
    op = Operation.objects.get(pk=op_id)
    assert op.finished_at is not None
    return (op.finished_at - op.created_at).total_seconds() * 1000


# --- the node ----------------------------------------------------------------------------------


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_uid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def account_uids(passwd: Path) -> set[int]:
    """The uids of hosting accounts in a passwd file (marked by their GECOS comment)."""
    uids = set()
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 4 and fields[4].startswith("hostwright service "):
            uids.add(int(fields[2]))
    return uids


@dataclass
class LabSide:
    """One lab node: its processes are those in its cgroup, its files under its root."""

    lab: Any
    node: Any

    def memory_kb(self) -> int:
        skip = account_uids(self.node.root / "etc" / "passwd")
        mark = f"/hostwright-lab/{self.node.name}"
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cgroup = Path(f"/proc/{entry}/cgroup").read_text()
            except OSError:
                continue
            if mark in cgroup and proc_uid(int(entry)) not in skip:
                total += pss_kb(int(entry))
        return total

    def close(self) -> None:
        self.lab.close()


@dataclass
class LoopbackSide:
    """This machine's node, shared: only nginx and PHP-FPM's own processes count."""

    names: tuple[str, ...] = ("nginx", "php-fpm8.2")

    def memory_kb(self) -> int:
        skip = account_uids(Path("/etc/passwd"))
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm in self.names and proc_uid(int(entry)) not in skip:
                total += pss_kb(int(entry))
        return total

    def close(self) -> None:
        pass


def open_lab() -> tuple[LabSide, Any]:
    from provisioning import nodes
    from tests.lab.lab import Lab

    pubkey = nodes.panel_public_key(create=True)
    lab = Lab.open()
    try:
        (lab_node,) = lab.up(count=1, panel_pubkey=pubkey)
        row = nodes.node_register(
            name=lab_node.name, address=lab_node.address, roles=["web", "db", "mail", "dns"],
            capacity_accounts=1_000_000, capacity_disk_mb=10_000_000,
            shared_ips=[lab_node.address],
        )  # fmt: skip
        assert row.host_key == lab_node.host_key
    except BaseException:
        lab.close()
        raise
    return LabSide(lab, lab_node), row


def open_loopback() -> tuple[LoopbackSide, Any]:
    from provisioning.models import Node

    if not TEST_NODE_KEY.exists():
        raise SystemExit(f"no loopback node key at {TEST_NODE_KEY}: bootstrap the test node")
    ENV["PROVISIONING_SSH_KEY"] = str(TEST_NODE_KEY)
    os.environ["PROVISIONING_SSH_KEY"] = str(TEST_NODE_KEY)
    from django.conf import settings

    settings.PROVISIONING_SSH_KEY = str(TEST_NODE_KEY)
    subprocess.run(
        [sys.executable, "manage.py", "node_local_setup", "--name", "scale", "--skip-bootstrap"],
        cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    Node.objects.filter(name="scale").update(
        capacity_accounts=1_000_000, capacity_disk_mb=10_000_000
    )
    return LoopbackSide(), Node.objects.get(name="scale")


# --- reloads under traffic ---------------------------------------------------------------------


@dataclass
class Prober:
    """Asks one site for a static and a PHP page in a loop; counts what went wrong."""

    address: str
    domain: str
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def get(self, path: str, expect: bytes) -> None:
        self.requests += 1
        try:
            conn = http.client.HTTPConnection(self.address, 80, timeout=15)
            try:
                conn.request("GET", path, headers={"Host": self.domain})
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
        except OSError as exc:
            self.errors.append(f"{path}: {exc!r}")
            return
        if response.status != 200 or expect not in body:
            self.errors.append(f"{path}: {response.status} {body[:80]!r}")

    def loop(self) -> None:
        while not self._stop.is_set():
            self.get("/", self.domain.encode())
            self.get("/probe.php", b"probe ")

    def __enter__(self) -> Prober:
        self._stop.clear()
        self._thread = threading.Thread(target=self.loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


@dataclass
class OldAccount:
    """The first account: the one whose configuration the reloads change."""

    service: Any
    target: Any
    key: str
    toggles: int = 0

    def call(self, actions: list) -> float:
        from provisioning import ssh

        started = time.perf_counter()
        answer = ssh.call(self.target, actions, key_path=self.key, timeout=600)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.ok, answer.failure()
        return elapsed

    def site(self, *, alternate: bool) -> list:
        from provisioning.ssh import action
        from provisioning.steps.hosting import listen_ip

        s = self.service
        # Another service number changes only the file's comment line: a real change (the
        # agent writes, checks and reloads) that serves the same site.
        number = s.pk + 1_000_000 if alternate else s.pk
        return [action("site.ensure", user=s.username, service=number, domain=s.domain,
                       ip=listen_ip(s), suspended=False)]  # fmt: skip

    def pool(self, *, alternate: bool) -> list:
        from provisioning.ssh import action

        plan = self.service.plan
        workers = plan.php_workers + 1 if alternate else plan.php_workers
        return [action("pool.ensure", user=self.service.username, workers=workers,
                       memory_mb=plan.memory_mb)]  # fmt: skip

    def write_probe(self) -> None:
        from provisioning.ssh import action

        data = base64.b64encode(PROBE_PHP.encode()).decode()
        self.call([action("files.write", user=self.service.username,
                          path="public_html/probe.php", data=data)])  # fmt: skip

    def reloads(self, rounds: int = 3) -> tuple[float, float]:
        """Median milliseconds of one nginx and one PHP-FPM change (each back and forth)."""
        nginx, fpm = [], []
        for _ in range(rounds):
            self.toggles += 1
            alternate = self.toggles % 2 == 1
            nginx.append(self.call(self.site(alternate=alternate)))
            fpm.append(self.call(self.pool(alternate=alternate)))
        if self.toggles % 2:
            self.toggles += 1
            self.call(self.site(alternate=False))
            self.call(self.pool(alternate=False))
        return statistics.median(nginx), statistics.median(fpm)


@dataclass
class Step:
    accounts: int
    add_ms: float
    nginx_ms: float
    fpm_ms: float
    mem_kb: int
    requests: int
    errors: int
    fill_s: float


def terminate_all() -> None:
    from provisioning import services
    from provisioning.models import Service

    ops: list[int] = []
    for service in Service.objects.filter(state__in=["active", "failed", "suspended"]):
        ops.append(services.service_terminate(service=service).pk)
        if len(ops) >= 8:
            ops = check_done(ops)
            while len(ops) >= 8:
                time.sleep(0.2)
                ops = check_done(ops)
    wait_all(ops, timeout=1800)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loopback", action="store_true", help="this machine's node, not a lab")
    parser.add_argument("--sizes", default="", help="comma-separated account counts")
    parser.add_argument("--samples", type=int, default=3, help="accounts timed at each step")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/node_scale.py needs root (a lab node, or the loopback node)")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        QUICK_SIZES if args.quick else FULL_SIZES
    )  # fmt: skip
    if sizes != sorted(sizes) or sizes[0] < args.samples + 1:
        raise SystemExit("sizes go up, and the first is larger than --samples")

    prepare()
    from billing.models import Plan, Product
    from provisioning import nodes
    from provisioning.models import Service

    if args.loopback:
        side: LabSide | LoopbackSide
        side, node = open_loopback()
    else:
        side, node = open_lab()
    worker = None
    steps: list[Step] = []
    try:
        product = Product.objects.create(name="Shared", slug="shared")
        plan = Plan.objects.create(product=product, name="Scale", slug="scale", disk_mb=100,
                                   bandwidth_gb=1, php_workers=2)  # fmt: skip
        empty_kb = side.memory_kb()
        worker = start_worker(args.concurrency)
        # The first account (it also warms the worker's connections) is the old one whose
        # site is asked for pages during the reloads.
        wait_all([order(plan, "old")])
        service = Service.objects.select_related("plan").get(domain__startswith="old-")
        from django.conf import settings

        old = OldAccount(service, nodes.node_target(node), settings.PROVISIONING_SSH_KEY)
        old.write_probe()
        prober = Prober(node.address, service.domain)
        prober.get("/probe.php", b"probe ")
        assert not prober.errors, prober.errors
        have = 1
        print(f"node {node.name} at {node.address}; empty: {empty_kb} kB", flush=True)
        for size in sizes:
            fill_s = fill(plan, size - args.samples - have, args.concurrency * 2)
            adds = [add_one(plan, f"add{size}-{i}") for i in range(args.samples)]
            have = size
            mem_kb = side.memory_kb()
            before_requests, before_errors = prober.requests, len(prober.errors)
            with prober:
                nginx_ms, fpm_ms = old.reloads()
            step = Step(
                accounts=size,
                add_ms=statistics.median(adds),
                nginx_ms=nginx_ms,
                fpm_ms=fpm_ms,
                mem_kb=mem_kb,
                requests=prober.requests - before_requests,
                errors=len(prober.errors) - before_errors,
                fill_s=fill_s,
            )
            steps.append(step)
            per_account = (mem_kb - empty_kb) / size
            print(
                f"{size:5d} accounts (filled in {fill_s:.0f} s): add {step.add_ms:.0f} ms "
                f"(of {', '.join(f'{a:.0f}' for a in adds)}), nginx change {nginx_ms:.0f} ms, "
                f"PHP-FPM change {fpm_ms:.0f} ms, memory {mem_kb} kB ({per_account:.0f} kB "
                f"per account), {step.errors} errors in {step.requests} requests",
                flush=True,
            )
        for error in prober.errors[:10]:
            print(f"error during a reload: {error}")
    finally:
        try:
            if worker is not None and args.loopback:
                terminate_all()
        finally:
            if worker is not None:
                stop_worker(worker)
            side.close()

    first, last = steps[0], steps[-1]
    per_account = (last.mem_kb - empty_kb) / last.accounts
    print(
        f"BENCH node_scale accounts={last.accounts} add_first_ms={first.add_ms:.0f} "
        f"add_last_ms={last.add_ms:.0f} growth={last.add_ms / first.add_ms:.2f} "
        f"mem_per_account_kb={per_account:.0f} reload_ms={last.nginx_ms + last.fpm_ms:.0f} "
        f"errors_during_reload={sum(s.errors for s in steps)} nginx_ms={last.nginx_ms:.0f} "
        f"fpm_ms={last.fpm_ms:.0f}"
    )


if __name__ == "__main__":
    main()
