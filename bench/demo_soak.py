#!/usr/bin/env python3
"""Soak the embedded demo: several customers at once, a worker killed mid-run.

Starts the stack the way ``make demo`` does (``manage.py rundemo``: its redis-server broker,
the Stripe stand-in, a worker with beat and the web server) in a temporary var directory,
against the loopback hosting node, and drives it through the panel and the customer API from
``--clients`` concurrent customers: each orders an account and pays it with the stand-in's
test card, then adds DNS records, databases and mailboxes (API), backups and a WordPress
install (panel), one after the other, until ``--operations`` operations were started. Once a
third of them were started, the worker is killed (SIGKILL) to prove that rundemo restarts it
and that no operation is lost.

Every operation started must end: ``completed``, or ``failed`` = rolled back with a reason a
customer can read; ``lost`` = still not final at the end. ``crashes`` counts children of
rundemo that died without being killed by this bench; ``restarts`` all restarts it made.
The floor is the issue's: crashes=0 and lost=0 (the exit status says whether it held).

    python bench/demo_soak.py --quick     # 200 operations, 4 customers, a few minutes
    python bench/demo_soak.py             # 1000 operations
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
FINAL = {"completed", "failed", "rolled_back"}
CARD = "4242 4242 4242 4242"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tally:
    started: list[tuple[int, Client]] = field(default_factory=list)  # (operation, its reader)
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.started)


class Client:
    """One customer using the panel (session) and the API (token)."""

    def __init__(self, base: str, email: str, password: str, token: str, tally: Tally) -> None:
        self.base, self.tally, self.token = base, tally, token
        self.http = requests.Session()
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.login(email, password)

    def _timed(self, method: str, session: requests.Session, url: str, **kw: Any) -> Any:
        t0 = time.perf_counter()
        response = session.request(method, url if "://" in url else self.base + url, **kw)
        with self.tally.lock:
            self.tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
        return response

    def _csrf(self, url: str) -> str:
        page = self._timed("GET", self.http, url).text
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if match is None:
            raise RuntimeError(f"no form on {url}")
        return match.group(1)

    def post(self, url: str, data: dict[str, object], form_page: str | None = None):
        token = self._csrf(form_page or url)
        return self._timed(
            "POST",
            self.http,
            url,
            data={**data, "csrfmiddlewaretoken": token},
            headers={"Referer": self.base + (form_page or url)},
            allow_redirects=False,
        )

    def login(self, email: str, password: str) -> None:
        r = self.post("/accounts/login/", {"login": email, "password": password})
        if r.status_code != 302:
            said = re.findall(r'(?:errorlist|role="alert")[^>]*>(.*?)</', r.text, flags=re.S)
            raise RuntimeError(f"login of {email} failed: {r.status_code} {said}")

    # -- operations ------------------------------------------------------------------------
    def operations(self, service_id: int) -> list[dict]:
        r = self._timed("GET", self.api, "/api/v1/operations/?limit=200")
        return [o for o in r.json()["results"] if o["service_id"] == service_id]

    def newest(self, service_id: int, kind: str, after: int) -> int | None:
        ops = [o for o in self.operations(service_id) if o["kind"] == kind and o["id"] > after]
        return max((o["id"] for o in ops), default=None)

    def wait(self, operation_id: int, limit: float = 240) -> str:
        deadline = time.monotonic() + limit
        state = "?"
        while time.monotonic() < deadline:
            r = self._timed("GET", self.api, f"/api/v1/operations/{operation_id}/")
            if r.status_code == 200:
                state = r.json()["state"]
                if state in FINAL:
                    return state
            time.sleep(0.5)
        return state

    def record(self, operation_id: int, what: str) -> None:
        with self.tally.lock:
            self.tally.started.append((operation_id, self))

    def order(self, plan: str, domain: str) -> int:
        """Order and pay an account with the stand-in's test card; returns the service id."""
        r = self.post(f"/order/{plan}/", {"domain": domain, "cycle": "monthly", "coupon": ""})
        assert r.status_code == 302, f"order form: {r.status_code}"
        r = self.post("/checkout/", {})
        assert r.status_code == 302, f"checkout: {r.status_code}"
        invoice_url = r.headers["Location"]
        r = self.post(f"{invoice_url}pay/", {}, form_page=invoice_url)
        assert r.status_code == 302, f"pay: {r.status_code}"
        pay_page = r.headers["Location"]
        r = self._timed("POST", self.http, pay_page, data={"card": CARD}, allow_redirects=False)
        assert r.status_code == 303, f"card page: {r.status_code}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            services = self._timed("GET", self.api, "/api/v1/services/").json()["results"]
            mine = [s for s in services if s["domain"] == domain]
            if mine:
                return int(mine[0]["id"])
            time.sleep(0.3)
        raise RuntimeError(f"the paid order for {domain} never became a service")

    def run_one(self, service_id: int, domain: str, what: str, name: str) -> None:
        """Start one operation of kind ``what`` and wait for its end."""
        before = max((o["id"] for o in self.operations(service_id)), default=0)
        sid = f"/api/v1/services/{service_id}"
        panel = f"/services/{service_id}/resources"
        page = f"/services/{service_id}/"
        secret = secrets.token_urlsafe(16)
        if what == "dns_records":
            r = self._timed("POST", self.api, f"{sid}/dns-records/", json={"replace": [
                {"name": name, "type": "TXT", "contents": [f'"soak {name}"'], "ttl": 300}
            ]})  # fmt: skip
        elif what == "database_create":
            r = self._timed("POST", self.api, f"{sid}/databases/",
                            json={"name": name, "user": name, "password": secret})  # fmt: skip
        elif what == "database_delete":
            r = self._timed("POST", self.api, f"{sid}/databases/delete/",
                            json={"name": name, "user": name})  # fmt: skip
        elif what == "mailbox_create":
            r = self._timed(
                "POST",
                self.api,
                f"{sid}/mailboxes/",
                json={"local_part": name, "password": secret, "quota_mb": 100},
            )
        elif what == "mailbox_delete":
            r = self._timed(
                "POST", self.api, f"{sid}/mailboxes/delete/", json={"address": f"{name}@{domain}"}
            )
        elif what == "backup_create":
            r = self.post(f"{panel}/backup-add/", {}, form_page=page)
        elif what == "wordpress_install":
            r = self.post(f"{panel}/wordpress-add/", {"title": f"Soak {name}",
                          "admin_user": f"admin{name}", "admin_email": f"{name}@example.com"},
                          form_page=page)  # fmt: skip
        else:
            raise ValueError(what)
        if r.status_code not in (202, 302):
            with self.tally.lock:
                self.tally.refused += 1
                self.tally.errors.append(f"{what}: {r.status_code} {r.text[:200]}")
            return
        operation_id = self.newest(service_id, what, before)
        if operation_id is None:
            with self.tally.lock:
                self.tally.errors.append(f"{what}: accepted but no operation found")
            return
        self.record(operation_id, what)
        self.wait(operation_id)


# One customer's round: records, a database and a mailbox made and removed again (so the
# plan's limits never refuse), a backup; WordPress once, in the first round.
ROUND = ["dns_records", "database_create", "mailbox_create", "backup_create", "database_delete",
         "mailbox_delete", "dns_records", "wordpress_install"]  # fmt: skip


def customer_work(client: Client, n_client: int, quota: int, tally: Tally, plan: str) -> None:
    try:
        for attempt in range(3):  # an order whose account could not be built is ordered again
            domain = f"soak{n_client}-{attempt}-{secrets.token_hex(3)}.test"
            service_id = client.order(plan, domain)
            ops = client.operations(service_id)
            create = next(o["id"] for o in ops if o["kind"] == "create")
            client.record(create, "create")
            if client.wait(create) == "completed":
                break
        else:
            return
        n = 0
        while tally.count() < quota:
            what = ROUND[n % len(ROUND)]
            if what == "wordpress_install" and n >= len(ROUND):
                what = "dns_records"
            client.run_one(service_id, domain, what, f"s{n_client}r{n // len(ROUND)}")
            n += 1
    except Exception as exc:  # a client's failure is reported, not fatal
        with tally.lock:
            tally.errors.append(f"client {n_client}: {exc!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--operations", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--plan", default="business")
    parser.add_argument("--keep", action="store_true", help="keep the temporary var dir")
    args = parser.parse_args()
    quota = args.operations or (200 if args.quick else 1000)
    if os.geteuid() != 0:
        print("demo_soak needs root (the demo's hosting node is this machine)")
        return 2

    var = Path(tempfile.mkdtemp(prefix="hw-soak-"))
    web_port, stripe_port = free_port(), free_port()
    keys = ROOT / "var" / "test-node"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "HOSTING_ENV")
    }
    env.update(
        HOSTING_VAR_DIR=str(var),
        DEMO_ADDR=f"127.0.0.1:{web_port}",
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe_port}",
        SITE_URL=f"http://127.0.0.1:{web_port}",
        PROVISIONING_SSH_KEY=str(keys / "id_ed25519"),
        PROVISIONING_WEB_SSH_KEY=str(keys / "id_ed25519_web"),
        PROVISIONING_USER_PREFIX="hws",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    manage = [PY, "manage.py"]
    for cmd in (["migrate", "--noinput", "-v0"], ["demo_setup"],
                ["node_local_setup", "--skip-bootstrap"]):  # fmt: skip
        subprocess.run(manage + cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    printed = subprocess.run(
        [*manage, "shell", "-c", SETUP_CUSTOMERS.replace("N_CLIENTS", str(args.clients))],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    users = [w for line in printed.splitlines() if line.startswith("SOAK-USER ")
             for w in line.split()[1:]]  # fmt: skip
    log_path = var / "rundemo.log"
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(
            [*manage, "rundemo"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{web_port}"
    tally = Tally()
    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not answer; see {log_path}")
            time.sleep(0.3)
        clients = []
        for i in range(args.clients):
            email, password, token = users[3 * i : 3 * i + 3]
            clients.append(Client(base, email, password, token, tally))
        threads = [
            threading.Thread(target=customer_work, args=(c, i, quota, tally, args.plan))
            for i, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        killed = 0
        while any(t.is_alive() for t in threads):
            if not killed and tally.count() >= quota // 3:
                pid = int((var / "run" / "worker.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                killed = pid
                print(f"killed the worker (pid {pid}) after {tally.count()} operations")
            time.sleep(0.5)
        # every operation started must end; wait for the stragglers (retries, the sweeper)
        states: dict[int, str] = {}
        details: dict[int, dict] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pending = [(oid, c) for oid, c in tally.started if states.get(oid) not in FINAL]
            if not pending:
                break
            for oid, reader in pending:
                r = reader._timed("GET", reader.api, f"/api/v1/operations/{oid}/")
                if r.status_code == 200:
                    states[oid] = r.json()["state"]
                    details[oid] = r.json()
            time.sleep(1)
        reasons = [details[oid] for oid, _ in tally.started
                   if states.get(oid) in ("failed", "rolled_back")]  # fmt: skip
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
    elapsed = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    exits = re.findall(r"^(\S+) exited \(code (-?\d+)\)", text, flags=re.M)
    restarts = len(re.findall(r"^\S+ started again", text, flags=re.M))
    planned = 1 if killed and ("worker", "-9") in exits else 0
    crashes = len(exits) - planned
    completed = sum(1 for oid, _ in tally.started if states.get(oid) == "completed")
    failed = sum(1 for oid, _ in tally.started if states.get(oid) in ("failed", "rolled_back"))
    lost = len(tally.started) - completed - failed
    without_reason = [r["id"] for r in reasons if not (r.get("reason") or "").strip()]
    lat = sorted(tally.latencies_ms)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0
    for line in tally.errors[:10]:
        print("client error:", line)
    for r in reasons[:5]:
        print(f"rolled back: #{r['id']} {r['kind']}: {r['reason']}")
    if without_reason:
        print(f"rolled back without a reason: {without_reason}")
    if args.keep:
        print(f"var dir kept: {var}")
    else:
        shutil.rmtree(var, ignore_errors=True)
    held = crashes == 0 and lost == 0 and not without_reason and restarts >= 1
    print(f"{len(tally.started)} operations in {elapsed:.0f} s from {args.clients} customers; "
          f"floor crashes=0 lost=0 {'held' if held else 'NOT held'}")  # fmt: skip
    print(
        f"BENCH demo_soak operations={len(tally.started)} completed={completed} failed={failed} "
        f"lost={lost} crashes={crashes} restarts={restarts} p99_ms={p99:.0f} "
        f"refused={tally.refused} seconds={elapsed:.0f}"
    )
    return 0 if held else 1


# Customers for the soak: a verified user each, with a read-write API token.
SETUP_CUSTOMERS = """
import secrets
from allauth.account.models import EmailAddress
from accounts.models import User
from accounts.services import customer_create_for_signup
from api.services import api_token_create
for i in range(N_CLIENTS):
    email = f"soak{i}-{secrets.token_hex(3)}@example.com"
    password = secrets.token_urlsafe(16)
    user = User.objects.create_user(email, password, full_name=f"Soak {i}")
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    customer = customer_create_for_signup(
        user=user, name=f"Soak {i}", company="", country="DE", currency="EUR"
    )
    token = api_token_create(customer=customer, user=user, name="soak", scope="write")
    print("SOAK-USER", email, password, token.secret)
"""


if __name__ == "__main__":
    sys.exit(main())
