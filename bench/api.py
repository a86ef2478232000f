"""How fast the provisioning API's create call answers, against a bare DRF endpoint.

Starts gunicorn on a benchmark database (PostgreSQL) with the production settings path,
then sends signed create-account requests from several client threads and, in the same run,
unsigned requests to /api/v1/ping (a bare DRF view: no auth, no database) as the floor.
The create call validates, places the account, writes the service, operation and audit rows
and publishes the Celery task (Redis); it never waits on a node.

    .venv/bin/python bench/api.py [--quick]

It measures one client (latency: p99 of the create call, and of the floor) and four clients at
once (throughput: requests per second; the sync workers queue what they cannot take).

Last line: BENCH api create_p99_ms=... create_p99_ms_c4=... create_rps_c4=... floor_p99_ms=...
floor_rps_c4=... ratio_p99=...
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.lib.server import free_port, start_gunicorn, stop_gunicorn  # noqa: E402

DB_NAME = os.environ.get("BENCH_DATABASE", "hw_bench_api")
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10"),
    "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/11"),
    "HOSTING_VAR_DIR": str(ROOT / "var" / "bench-api"),
    "LOG_LEVEL": "WARNING",
    "API_THROTTLE_PROVISIONING": "1000000/min",
}


def prepare_database() -> tuple[str, str]:
    from bench.lib.database import fresh_database

    fresh_database(DB_NAME, ENV)
    os.environ.update(ENV)
    import django

    django.setup()
    from api.models import ProvisioningClient
    from api.services import provisioning_key_issue
    from billing.models import Plan, Product
    from provisioning.models import Node

    product = Product.objects.create(name="Shared", slug="shared")
    Plan.objects.create(product=product, name="Bench", slug="bench", disk_mb=1000, bandwidth_gb=1)
    Node.objects.create(
        name="bench-node", address="127.0.0.1", roles=["web"], capacity_accounts=1_000_000
    )
    issued = provisioning_key_issue(client=ProvisioningClient.objects.create(name="bench"))
    return issued.public, issued.secret


def run_load(port: int, requests: int, threads: int, make_request) -> tuple[list[float], float]:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            method, path, body, headers, expected = make_request(i)
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != expected:
                failures.append(f"{path}: HTTP {response.status}, expected {expected}")
                break
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise SystemExit(failures[0])
    return latencies, time.perf_counter() - started


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    threads = int(os.environ.get("BENCH_THREADS", "4"))
    key_id, secret = prepare_database()
    from api.signing import sign_request

    port = free_port()
    server = start_gunicorn(port, ENV, workers=2)
    run_tag = secrets.token_hex(3)

    def ping(i: int):
        return "GET", "/api/v1/ping", None, {}, 200

    sequence = iter(range(10**9))

    def create(i: int):
        i = next(sequence)  # unique across runs: every request orders a new domain
        path = "/api/v1/provisioning/accounts"
        body = json.dumps({
            "plan": "bench", "domain": f"site{i}-{run_tag}.example.com",
            "customer": {"name": f"Bench {i}", "email": f"b{i}-{run_tag}@example.com",
                         "country": "DE"},
        }).encode()  # fmt: skip
        ts, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "X-Hostwright-Key": key_id,
            "X-Hostwright-Timestamp": ts,
            "X-Hostwright-Nonce": nonce,
            "X-Hostwright-Signature": sign_request(
                secret, method="POST", path=path, timestamp=ts, nonce=nonce, body=body
            ),
        }
        return "POST", path, body, headers, 202

    try:
        run_load(port, 50, threads, ping)  # warm up both workers
        # and their create path: a worker's first create imports the engine's kinds, connects
        # to the broker and collects a young heap (1-8 s on a loaded machine); with 200 calls
        # and 2 workers those two cold calls were the p99 itself
        run_load(port, 20, threads, create)
        floor1, _ = run_load(port, n, 1, ping)
        floor, floor_elapsed = run_load(port, n, threads, ping)
        single, _ = run_load(port, n, 1, create)
        created, create_elapsed = run_load(port, n, threads, create)
    finally:
        stop_gunicorn(server)
    from provisioning.models import Operation

    queued = Operation.objects.filter(state="queued").count()
    print(f"requests={n} per run, gunicorn_workers=2, operations_queued={queued}")
    print(
        f"one client:   create p50 {statistics.median(single) * 1000:.1f} ms, "
        f"p99 {p99(single):.1f} ms; floor p99 {p99(floor1):.1f} ms"
    )
    print(f"{threads} clients: create p50 {statistics.median(created) * 1000:.1f} ms, "
          f"p99 {p99(created):.1f} ms, {n / create_elapsed:.0f}/s; floor p99 {p99(floor):.1f} ms, "
          f"{n / floor_elapsed:.0f}/s")  # fmt: skip
    print(
        f"BENCH api create_p99_ms={p99(single):.1f} create_p99_ms_c{threads}={p99(created):.1f} "
        f"create_rps_c{threads}={n / create_elapsed:.0f} floor_p99_ms={p99(floor1):.1f} "
        f"floor_rps_c{threads}={n / floor_elapsed:.0f} ratio_p99={p99(single) / p99(floor1):.1f}"
    )


if __name__ == "__main__":
    main()
