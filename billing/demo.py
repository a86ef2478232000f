"""The demo catalog: what `make demo` sells."""

from __future__ import annotations

from billing.models import Plan, Product

DEMO_PLANS = [
    # slug, name, disk MB, bandwidth GB, sites, databases, mailboxes, memory MB, cpu %, procs, ip
    ("starter", "Starter", 5_000, 100, 1, 2, 5, 512, 50, 32, False),
    ("business", "Business", 25_000, 500, 5, 10, 25, 1024, 100, 64, False),
    ("pro", "Pro", 100_000, 2_000, 25, 50, 100, 2048, 200, 128, True),
]


def load_demo_catalog() -> list[Plan]:
    """Create or update the demo products and plans (idempotent)."""
    shared, _ = Product.objects.update_or_create(
        slug="shared-hosting",
        defaults={
            "name": "Shared hosting",
            "kind": Product.Kind.SHARED,
            "description": "PHP sites with MariaDB, mail and free certificates.",
            "position": 1,
        },
    )
    Product.objects.update_or_create(
        slug="wordpress-hosting",
        defaults={
            "name": "WordPress hosting",
            "kind": Product.Kind.WORDPRESS,
            "description": "Shared hosting with WordPress installed for you.",
            "position": 2,
        },
    )
    plans = []
    for position, row in enumerate(DEMO_PLANS):
        slug, name, disk, bw, sites, dbs, mbx, mem, cpu, procs, ip = row
        plan, _ = Plan.objects.update_or_create(
            slug=slug,
            defaults={
                "product": shared,
                "name": name,
                "position": position,
                "disk_mb": disk,
                "bandwidth_gb": bw,
                "sites": sites,
                "databases": dbs,
                "mailboxes": mbx,
                "memory_mb": mem,
                "cpu_percent": cpu,
                "processes": procs,
                "dedicated_ip": ip,
            },
        )
        plans.append(plan)
    return plans
