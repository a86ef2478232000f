"""How fast the customer panel's dashboard and service page answer under concurrent clients,
next to a bare Django page on the same server.

Loads customers into a benchmark database (PostgreSQL): each with an owner, three services
with a completed create operation and its step runs, an issued invoice and a ticket. Starts
gunicorn with the production settings path, signs in a sample of the customers (sessions
written straight to the session store), then has concurrent clients fetch random customers'
dashboards and service pages. In the same run the same clients fetch /api/v1/ping (a bare
view: no session, no database) as the floor.

    .venv/bin/python bench/panel_load.py [--quick]

--quick loads 1,000 customers instead of 10,000 and sends fewer requests.

Last line: BENCH panel customers=... clients=... dashboard_p50_ms=... dashboard_p99_ms=...
service_p50_ms=... service_p99_ms=... panel_rps=... floor_p50_ms=... floor_p99_ms=...
floor_rps=... ratio_p99=... dashboard_p99_ms_c1=... service_p99_ms_c1=... (the last two with
a single client: the pages' own latency, without queueing behind other requests)
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.lib.server import free_port, start_gunicorn, stop_gunicorn  # noqa: E402

DB_NAME = os.environ.get("BENCH_DATABASE", "hw_bench_panel")
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"),
    "HOSTING_VAR_DIR": str(ROOT / "var" / "bench-panel"),
    "LOG_LEVEL": "WARNING",
}
SERVICES_PER_CUSTOMER = 3


def prepare_database(customers: int, signed_in: int) -> list[tuple[str, list[int]]]:
    """Fill the database; return (session key, service ids) for the signed-in sample."""
    from bench.lib.database import fresh_database

    fresh_database(DB_NAME, ENV)
    import django

    django.setup()
    import datetime as dt
    from decimal import Decimal

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Customer, Membership, User
    from billing.models import Invoice, Plan, Product
    from provisioning.models import Node, Operation, Service, StepRun
    from support.models import Department, Ticket

    product = Product.objects.create(name="Shared", slug="shared")
    plan = Plan.objects.create(
        product=product, name="Bench", slug="bench", disk_mb=1000, bandwidth_gb=10
    )
    node = Node.objects.create(name="bench", address="127.0.0.1", roles=["web"])
    department = Department.objects.create(name="Support", email="support@bench.example")
    now = timezone.now()
    batch = 1000
    for start in range(0, customers, batch):
        count = min(batch, customers - start)
        users = User.objects.bulk_create(
            User(email=f"c{start + i}@bench.example", password="!", full_name=f"C {start + i}")
            for i in range(count)
        )
        custs = Customer.objects.bulk_create(
            Customer(name=f"Customer {start + i}", country="DE", currency="EUR")
            for i in range(count)
        )
        Membership.objects.bulk_create(
            Membership(customer=c, user=u, role=Membership.Role.OWNER)
            for c, u in zip(custs, users, strict=True)
        )
        services = Service.objects.bulk_create(
            Service(
                customer=c,
                plan=plan,
                node=node,
                username=f"b{c.pk}x{j}",
                domain=f"c{c.pk}-{j}.bench.example",
                state="active",
                disk_used_mb=10 * j,
            )
            for c in custs
            for j in range(SERVICES_PER_CUSTOMER)
        )
        ops = Operation.objects.bulk_create(
            Operation(service=s, kind="create", state="completed", finished_at=now)
            for s in services
        )
        StepRun.objects.bulk_create(
            StepRun(operation=op, position=k, step=name, status="succeeded", finished_at=now)
            for op in ops
            for k, name in enumerate(("validate", "linux_user", "php_pool", "nginx_site"))
        )
        Invoice.objects.bulk_create(
            Invoice(
                customer=c,
                kind="manual",
                state="issued",
                number=f"B-{c.pk}",
                currency="EUR",
                subtotal=Decimal("9.00"),
                total=Decimal("9.00"),
                issue_date=dt.date.today(),
                due_date=dt.date.today(),
            )
            for c in custs
        )
        Ticket.objects.bulk_create(
            Ticket(customer=c, department=department, subject="Hello", state="open") for c in custs
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    sample = list(Customer.objects.order_by("?")[:signed_in].prefetch_related("services", "users"))
    out = []
    for customer in sample:
        user = customer.users.all()[0]
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        out.append((store.session_key or "", [s.pk for s in customer.services.all()]))
    return out


def run_load(port: int, requests: int, clients: int, make_request) -> tuple[dict, float]:
    """Send ``requests`` GETs from ``clients`` keep-alive connections; latencies by label."""
    latencies: dict[str, list[float]] = {}
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: dict[str, list[float]] = {}
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            label, path, headers, marker = make_request(i)
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            mine.setdefault(label, []).append(time.perf_counter() - started)
            if response.status != 200 or marker not in body:
                failures.append(f"{path}: HTTP {response.status}")
                break
        with lock:
            for label, values in mine.items():
                latencies.setdefault(label, []).extend(values)

    started = time.perf_counter()
    pool = [threading.Thread(target=client) for _ in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise SystemExit(failures[0])
    return latencies, time.perf_counter() - started


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 customers, fewer requests")
    args = parser.parse_args()
    customers = 1_000 if args.quick else 10_000
    requests = 1_000 if args.quick else 10_000
    clients = int(os.environ.get("BENCH_CLIENTS", "50"))
    workers = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
    sessions = prepare_database(customers, signed_in=200)
    port = free_port()
    server = start_gunicorn(port, ENV, workers=workers, threads=4)
    try:
        rng = random.Random(7)

        def panel(i: int):
            key, services = sessions[rng.randrange(len(sessions))]
            headers = {"Cookie": f"sessionid={key}", "Host": "localhost"}
            if i % 2:
                return "dashboard", "/", headers, b"Your hosting"
            return "service", f"/services/{rng.choice(services)}/", headers, b"usage-title"

        def floor(i: int):
            return "floor", "/api/v1/ping", {"Host": "localhost"}, b""

        run_load(port, 200, clients, panel)  # warm the workers' connections and caches
        alone, _ = run_load(port, 400, 1, panel)  # one client: the pages' own latency
        got, panel_s = run_load(port, requests, clients, panel)
        bare, floor_s = run_load(port, requests, clients, floor)
    finally:
        stop_gunicorn(server)
    dash, svc, fl = got["dashboard"], got["service"], bare["floor"]
    print(
        f"customers={customers} services={customers * SERVICES_PER_CUSTOMER} requests={requests} "
        f"clients={clients} gunicorn_workers={workers}x4 threads cpus={os.cpu_count()}"
    )
    print(
        f"BENCH panel customers={customers} clients={clients} "
        f"dashboard_p50_ms={pct(dash, 50):.1f} dashboard_p99_ms={pct(dash, 99):.1f} "
        f"service_p50_ms={pct(svc, 50):.1f} service_p99_ms={pct(svc, 99):.1f} "
        f"panel_rps={requests / panel_s:.0f} floor_p50_ms={pct(fl, 50):.1f} "
        f"floor_p99_ms={pct(fl, 99):.1f} floor_rps={requests / floor_s:.0f} "
        f"ratio_p99={max(pct(dash, 99), pct(svc, 99)) / pct(fl, 99):.1f} "
        f"dashboard_p99_ms_c1={pct(alone['dashboard'], 99):.1f} "
        f"service_p99_ms_c1={pct(alone['service'], 99):.1f}"
    )


if __name__ == "__main__":
    main()
