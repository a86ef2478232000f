"""The demo catalog: what `make demo` sells, with prices, addons, tax rates and a coupon."""

from __future__ import annotations

from decimal import Decimal

from billing.models import Addon, AddonPrice, Coupon, Plan, Price, Product, TaxRate

DEMO_PLANS = [
    # product, slug, name, disk MB, bandwidth GB, sites, databases, mailboxes, memory MB, cpu %,
    # processes, PHP workers, dedicated IP
    ("shared-hosting", "starter", "Starter", 5_000, 100, 1, 2, 5, 512, 50, 32, 2, False),
    ("shared-hosting", "business", "Business", 25_000, 500, 5, 10, 25, 1024, 100, 64, 4, False),
    ("shared-hosting", "pro", "Pro", 100_000, 2_000, 25, 50, 100, 2048, 200, 128, 8, True),
    (
        "wordpress-hosting",
        "wp-personal",
        "WP Personal",
        10_000,
        200,
        1,
        2,
        5,
        1024,
        100,
        48,
        4,
        False,
    ),
    ("wordpress-hosting", "wp-shop", "WP Shop", 40_000, 1_000, 3, 6, 25, 2048, 200, 96, 8, False),
]
# slug: (monthly EUR, annual EUR, monthly USD, annual USD); a year costs ten months.
DEMO_PRICES = {
    "starter": ("4.90", "49.00", "5.50", "55.00"),
    "business": ("12.90", "129.00", "14.50", "145.00"),
    "pro": ("29.00", "290.00", "32.00", "320.00"),
    "wp-personal": ("7.90", "79.00", "8.90", "89.00"),
    "wp-shop": ("19.90", "199.00", "22.00", "220.00"),
}
DEMO_ADDONS = [
    # slug, name, kind, extra disk MB, monthly EUR, annual EUR
    ("dedicated-ip", "Dedicated IP address", Addon.Kind.DEDICATED_IP, 0, "3.00", "30.00"),
    ("storage-20", "Extra storage, 20 GB", Addon.Kind.EXTRA_STORAGE, 20_000, "2.00", "20.00"),
]
# The seller is in Germany; a few EU rates and the UK (not EU) for the demo.
DEMO_TAX_RATES = [
    ("DE", "USt", "19.00", True),
    ("FR", "TVA", "20.00", True),
    ("NL", "BTW", "21.00", True),
    ("AT", "USt", "20.00", True),
    ("IT", "IVA", "22.00", True),
    ("ES", "IVA", "21.00", True),
    ("GB", "VAT", "20.00", False),
]


def load_demo_catalog() -> list[Plan]:
    """Create or update the demo products, plans, prices, addons, tax rates (idempotent)."""
    shared, _ = Product.objects.update_or_create(
        slug="shared-hosting",
        defaults={
            "name": "Shared hosting",
            "kind": Product.Kind.SHARED,
            "description": "PHP sites with MariaDB, mail and free certificates.",
            "position": 1,
        },
    )
    wordpress, _ = Product.objects.update_or_create(
        slug="wordpress-hosting",
        defaults={
            "name": "WordPress hosting",
            "kind": Product.Kind.WORDPRESS,
            "description": (
                "More memory and PHP for WordPress; your site's page installs it in one click."
            ),
            "position": 2,
        },
    )
    products = {"shared-hosting": shared, "wordpress-hosting": wordpress}
    plans = []
    for position, row in enumerate(DEMO_PLANS):
        product, slug, name, disk, bw, sites, dbs, mbx, mem, cpu, procs, workers, ip = row
        plan, _ = Plan.objects.update_or_create(
            slug=slug,
            defaults={
                "product": products[product],
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
                "php_workers": workers,
                "dedicated_ip": ip,
            },
        )
        eur_m, eur_y, usd_m, usd_y = DEMO_PRICES[slug]
        for cycle, currency, amount in (
            ("monthly", "EUR", eur_m),
            ("annual", "EUR", eur_y),
            ("monthly", "USD", usd_m),
            ("annual", "USD", usd_y),
        ):
            Price.objects.update_or_create(
                plan=plan, cycle=cycle, currency=currency, defaults={"amount": Decimal(amount)}
            )
        plans.append(plan)
    for position, (slug, name, kind, extra, monthly, annual) in enumerate(DEMO_ADDONS):
        addon, _ = Addon.objects.update_or_create(
            slug=slug,
            defaults={"name": name, "kind": kind, "extra_disk_mb": extra, "position": position},
        )
        for cycle, amount in (("monthly", monthly), ("annual", annual)):
            AddonPrice.objects.update_or_create(
                addon=addon, cycle=cycle, currency="EUR", defaults={"amount": Decimal(amount)}
            )
    for country, name, rate, in_eu in DEMO_TAX_RATES:
        TaxRate.objects.update_or_create(
            country=country, defaults={"name": name, "rate": Decimal(rate), "in_eu": in_eu}
        )
    Coupon.objects.update_or_create(
        code="WELCOME20",
        defaults={"kind": Coupon.Kind.PERCENT, "value": Decimal("20"), "max_redemptions": 100},
    )
    return plans
