"""Paid-to-live time of a full hosting account against the floor.

A full account is what a customer has once the order is live: Linux user, PHP-FPM pool,
nginx server block, MariaDB database, DNS zone (verified by asking the nameserver), mail
domain, and a certificate from the node's Pebble with nginx serving HTTPS. In one run:

- engine: order -> ``create`` completed -> ``certificate_issue`` completed, through a real
  Celery worker (one SSH script per step, events, step runs, DNS API calls over SSH);
- floor: the same node work in as few round trips as it can take over one already-open SSH
  connection (one node agent request for the account, one for the zone and mail domain), the
  same ACME exchange (challenge answers through the node agent), and one agent request
  installing the certificate and the HTTPS include.

Uses bench/provision.py's database, worker and node setup, and the node parts 60-80.

    .venv/bin/python bench/resources.py [--quick]

Last line: BENCH resources engine_ms=... floor_ms=... ratio=...
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

from bench import provision as base  # noqa: E402

# Its own database, Redis databases, key directory and account prefix, so it can run while
# bench/provision.py runs.
base.DB_NAME = "hw_bench_resources"
base.PREFIX = "hwr"
base.ENV.update(
    {
        "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{base.DB_NAME}",
        # The caller's own Redis databases when it has them (as bench/provision.py).
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10"),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/11"),
        "HOSTING_VAR_DIR": str(ROOT / "var" / "bench-resources"),
        "PROVISIONING_SSH_KEY": str(ROOT / "var" / "bench-resources" / "id_ed25519"),
        "PROVISIONING_USER_PREFIX": base.PREFIX,
    }
)
PEBBLE = "https://127.0.0.1:14000/dir"
PEBBLE_CERT = "/etc/hostwright/pebble/cert.pem"


def node_parts() -> None:
    env = {
        **os.environ,
        "NODE_PROFILE": "test",
        "NODE_ACME": "pebble",
        "HW_NODE_LIB": str(ROOT / "deploy" / "node" / "lib.sh"),
    }
    for part in ("60-powerdns.sh", "70-acme.sh", "80-mail.sh"):
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "node" / "parts" / part)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def wait(op_id: int) -> None:
    base.wait_all([op_id], timeout=300)


def engine_account(customer, plan) -> float:
    """Order to HTTPS live, through the engine; milliseconds."""
    from django.db import transaction

    from provisioning import services
    from provisioning.models import Operation
    from provisioning.resources import services as resources

    started = time.perf_counter()
    with transaction.atomic():
        service = services.service_order(
            customer=customer, plan=plan, domain=f"full-{secrets.token_hex(3)}.bench.example"
        )
    wait(service.operations.get(kind=Operation.Kind.CREATE).pk)
    cert = resources.certificate_issue(service=service, directory_url=PEBBLE, ca_bundle=PEBBLE_CERT)
    wait(cert.pk)
    return (time.perf_counter() - started) * 1000


def agent(target, key: str, *actions) -> list:
    """One node agent request; every action must succeed."""
    from provisioning import ssh

    result = ssh.call(target, list(actions), key_path=key, timeout=120)
    assert result.ok, [r.error for r in result.results if r.error] or result.error
    return result.results


def floor_account(target, key: str, plan, n: int) -> tuple[float, str, str]:
    """The same node work in the fewest round trips, the ACME exchange, one install request."""
    import datetime as dt

    from provisioning import ssh
    from provisioning.resources import acme as hwacme
    from provisioning.resources import certificates
    from provisioning.resources import dns as hwdns
    from provisioning.ssh import action

    user = f"{base.PREFIX}floor{n}{secrets.token_hex(2)}"
    domain = f"floor{n}-{secrets.token_hex(2)}.bench.example"
    nameservers = ["ns1.hostwright.test", "ns2.hostwright.test"]
    started = time.perf_counter()
    answer = ssh.call(target, base.floor_actions(user, domain, plan), key_path=key, timeout=120)
    assert answer.ok, answer.failure()
    rrsets = hwdns.zone_rrsets(
        domain=domain,
        ipv4="127.0.0.1",
        nameservers=nameservers,
        serial=hwdns.next_serial(0, dt.datetime.now(dt.UTC).date()),
    )
    # The mail policy records (SPF, DMARC) go with the zone, as the engine's zone step sends them.
    policy = [
        {"name": r.name, "type": r.rtype, "ttl": r.ttl, "contents": list(r.contents)}
        for r in rrsets
        if r.rtype == "TXT"
    ]
    agent(
        target,
        key,
        action("mail.domain.ensure", domain=domain),
        action(
            "dns.zone_ensure",
            domain=domain,
            ipv4="127.0.0.1",
            nameservers=nameservers,
            records=policy,
        ),
    )
    check = hwdns.verify_zone(domain, nameserver="127.0.0.1", port=5353, expect=rrsets)
    assert check.ok, check.problems

    class Files:
        def put(self, token: str, value: str) -> None:
            agent(target, key, action("cert.challenge_put", token=token, key_authorization=value))

        def remove(self, token: str) -> None:
            agent(target, key, action("cert.challenge_remove", token=token))

    issued = hwacme.issue_certificate(
        names=[domain, f"www.{domain}"],
        directory_url=PEBBLE,
        account_key_pem=certificates.account_key(),
        challenge_files=Files(),
        verify=PEBBLE_CERT,
    )
    agent(
        target,
        key,
        action(
            "cert.install",
            domain=domain,
            fullchain_pem=issued.fullchain_pem,
            key_pem=issued.key_pem,
        ),
        action("cert.https_ensure", account=user, domain=domain),
    )
    return (time.perf_counter() - started) * 1000, user, domain


def floor_cleanup(target, key: str, user: str, domain: str) -> None:
    from provisioning import ssh
    from provisioning.ssh import action

    agent(
        target,
        key,
        action("cert.https_remove", account=user),
        action("cert.remove", domain=domain),
        action("dns.zone_remove", domain=domain),
        action("mail.domain.remove", domain=domain, purge=True),
    )
    ssh.call(target, base.floor_cleanup(user), key_path=key, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/resources.py needs root: it turns this machine into a node")
    n = 2 if args.quick else 10

    base.prepare()
    node_parts()
    from django.conf import settings

    from billing.models import Plan, Product
    from provisioning import nodes, services, ssh
    from provisioning.models import Node, Service
    from tests.factories import CustomerFactory

    node = Node.objects.get(name="bench")
    Node.objects.filter(pk=node.pk).update(capacity_accounts=1_000_000)
    product = Product.objects.create(name="Shared", slug="shared")
    plan = Plan.objects.create(product=product, name="Bench", slug="bench", disk_mb=100,
                               bandwidth_gb=1, php_workers=2)  # fmt: skip
    customer = CustomerFactory.create()
    worker = base.start_worker(2)
    try:
        engine_account(customer, plan)  # warm up: SSH connections, the ACME account
        engine_ms = [engine_account(customer, plan) for _ in range(n)]

        target = nodes.node_target(node)
        key = settings.PROVISIONING_SSH_KEY
        ssh.call(target, [ssh.action("node.ping")], key_path=key, timeout=60)  # connect first
        floor_ms = []
        for i in range(n + 1):
            ms, user, domain = floor_account(target, key, plan, i)
            if i:  # the first one registers the ACME account: warm-up, like the engine's
                floor_ms.append(ms)
            floor_cleanup(target, key, user, domain)

        terminations = [
            services.service_terminate(service=s).pk
            for s in Service.objects.filter(state=Service.State.ACTIVE)
        ]
        base.wait_all(terminations)
    finally:
        base.stop_worker(worker)

    engine, floor = statistics.median(engine_ms), statistics.median(floor_ms)
    print(f"engine, paid to HTTPS live (median of {n}): {engine:.0f} ms")
    print(f"floor, agent requests + the same ACME exchange: {floor:.0f} ms")
    print(f"BENCH resources engine_ms={engine:.0f} floor_ms={floor:.0f} ratio={engine / floor:.2f}")


if __name__ == "__main__":
    main()
