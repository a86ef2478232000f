"""How long the daily billing run takes over many subscriptions, and what a re-run costs.

Builds N active subscriptions (100,000; 10,000 with --quick; 1,000,000 with --million;
any number with --size N) on a benchmark database, a tenth
of them due within the renewal window, then times the daily run (renewal invoices, reminders,
dunning scans) and a forced second run the same day, which must create nothing. In the same
run it times the naive way, one ``invoice_create`` call per subscription, on a sample, as the
baseline the set-based run is compared with.

    .venv/bin/python bench/billing_run.py [--quick | --million | --size N]

Last line: BENCH billing_run n=... due=... first_s=... second_s=... second_created=...
queries_per_sub=... batched_ms_per_sub=... naive_ms_per_sub=... speedup=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_DATABASE", "hw_bench_billing")
ENV = {
    **os.environ,
    "HOSTING_ENV": "test",
    "DJANGO_SETTINGS_MODULE": "hosting.settings",
    "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{DB_NAME}",
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"),
    "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13"),
    "HOSTING_VAR_DIR": str(ROOT / "var" / "bench-billing"),
    "LOG_LEVEL": "WARNING",
}
TODAY = dt.date(2026, 6, 1)
NAIVE_SAMPLE = 300


def prepare_database() -> None:
    from bench.lib.database import fresh_database

    fresh_database(DB_NAME, ENV)
    os.environ.update(ENV)
    import django

    django.setup()
    from django.conf import settings

    # Ten thousand invoice e-mails go to memory, not to the terminal.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def build(n: int, *, start: int = 0, due_share: int = 10) -> list[int]:
    """N customers' subscriptions, bulk-inserted; every ``due_share``-th is due soon."""
    from accounts.models import Customer, Membership, User
    from billing.models import Plan, Price, Product, Subscription, TaxRate
    from provisioning.models import Node, Service

    product, _ = Product.objects.get_or_create(slug="shared", defaults={"name": "Shared"})
    plan, _ = Plan.objects.get_or_create(
        slug="starter",
        defaults={"product": product, "name": "Starter", "disk_mb": 1000, "bandwidth_gb": 10},
    )
    Price.objects.get_or_create(
        plan=plan, cycle="monthly", currency="EUR", defaults={"amount": Decimal("10.00")}
    )
    TaxRate.objects.get_or_create(country="DE", defaults={"rate": Decimal("19"), "in_eu": True})
    node, _ = Node.objects.get_or_create(
        name="bench-web", defaults={"address": "127.0.0.1", "roles": ["web"]}
    )
    batch = 5000
    ids: list[int] = []
    for lo in range(start, start + n, batch):
        hi = min(lo + batch, start + n)
        users = User.objects.bulk_create(
            [User(email=f"bench{i}@example.com", password="!") for i in range(lo, hi)]
        )
        customers = Customer.objects.bulk_create(
            [
                Customer(name=f"Customer {i}", country="DE" if i % 3 else "US", currency="EUR")
                for i in range(lo, hi)
            ]
        )
        Membership.objects.bulk_create(
            [
                Membership(customer=c, user=u, role=Membership.Role.OWNER)
                for c, u in zip(customers, users, strict=True)
            ]
        )
        services = Service.objects.bulk_create(
            [
                Service(
                    customer=c,
                    plan=plan,
                    node=node,
                    username=f"u{i}",
                    domain=f"site{i}.example.com",
                    state="active",
                )
                for i, c in zip(range(lo, hi), customers, strict=True)
            ]
        )
        subs = Subscription.objects.bulk_create(
            [
                Subscription(
                    service=s,
                    customer=c,
                    plan=plan,
                    cycle="monthly",
                    currency="EUR",
                    amount=Decimal("10.00"),
                    period_start=TODAY - dt.timedelta(days=20),
                    # A tenth falls due within the 14-day renewal window, spread over it.
                    next_due_date=(
                        TODAY + dt.timedelta(days=(i // due_share) % 14)
                        if i % due_share == 0
                        else TODAY + dt.timedelta(days=20 + i % 10)
                    ),
                )
                for i, s, c in zip(range(lo, hi), services, customers, strict=True)
            ]
        )
        ids.extend(s.pk for s in subs)
    return ids


def timed_run(*, force: bool) -> tuple[float, int, dict[str, int]]:
    from django.db import connection

    from billing.automation import billing_run

    connection.force_debug_cursor = True
    connection.queries_log.clear()
    started = time.perf_counter()
    run = billing_run(today=TODAY, force=force)
    elapsed = time.perf_counter() - started
    queries = len(connection.queries_log)
    connection.force_debug_cursor = False
    return elapsed, queries, dict(run.counts)


def naive(sample_ids: list[int]) -> tuple[float, int]:
    """The baseline: the same renewal invoices, one service call per subscription."""
    from django.db import connection

    from billing.models import Invoice, Subscription
    from billing.selectors import LineSpec, cycle_end
    from billing.services import invoice_create

    connection.force_debug_cursor = True
    connection.queries_log.clear()
    started = time.perf_counter()
    for sub in Subscription.objects.filter(pk__in=sample_ids).select_related("customer", "plan"):
        end = cycle_end(sub.next_due_date, sub.cycle)
        invoice_create(
            customer=sub.customer,
            kind=Invoice.Kind.RENEWAL,
            lines=[LineSpec(f"{sub.plan} renewal", sub.amount)],
            due_date=sub.next_due_date,
            today=TODAY,
            subscription=sub,
            period_start=sub.next_due_date,
            period_end=end,
        )
    elapsed = time.perf_counter() - started
    queries = len(connection.queries_log)
    connection.force_debug_cursor = False
    return elapsed, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10,000 subscriptions")
    size.add_argument("--million", action="store_true", help="1,000,000 subscriptions")
    size.add_argument("--size", type=int, help="this many subscriptions (at least 10)")
    args = parser.parse_args()
    if args.size is not None and args.size < 10:
        parser.error("--size must be at least 10")
    n = args.size or (10_000 if args.quick else 1_000_000 if args.million else 100_000)
    print(f"preparing {DB_NAME} with {n} subscriptions", flush=True)
    prepare_database()
    t0 = time.perf_counter()
    build(n)
    print(f"fixtures built in {time.perf_counter() - t0:.1f}s", flush=True)

    first_s, first_q, counts = timed_run(force=False)
    due = counts.get("renewal_invoices", 0)
    print(f"first run: {first_s:.2f}s, {first_q} queries, {counts}", flush=True)
    second_s, _second_q, second = timed_run(force=True)
    created_again = second.get("renewal_invoices", 0) + second.get("reminders", 0)
    print(f"second run (same day, forced): {second_s:.2f}s, {second}", flush=True)

    sample = build(NAIVE_SAMPLE, start=n, due_share=1)
    naive_s, naive_q = naive(sample)
    batched_ms = first_s * 1000 / max(due, 1)
    naive_ms = naive_s * 1000 / NAIVE_SAMPLE
    print(
        f"naive: {NAIVE_SAMPLE} invoices one by one in {naive_s:.2f}s, "
        f"{naive_q / NAIVE_SAMPLE:.1f} queries each",
        flush=True,
    )
    print(
        f"BENCH billing_run n={n} due={due} first_s={first_s:.2f} second_s={second_s:.2f} "
        f"second_created={created_again} queries_per_sub={first_q / max(due, 1):.3f} "
        f"batched_ms_per_sub={batched_ms:.3f} naive_ms_per_sub={naive_ms:.3f} "
        f"speedup={naive_ms / batched_ms:.1f}"
    )


if __name__ == "__main__":
    main()
