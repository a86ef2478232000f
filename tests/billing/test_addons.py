"""Add-ons provide what they charge for: extra storage raises the account's disk limit, a
dedicated IP is taken from the node's pool and the site listens on it; one that cannot be
given is not offered, and checkout refuses it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hwagent import sites

from billing import services
from billing.models import Addon, AddonPrice, Invoice
from panel.selectors import service_usage
from provisioning.models import IPAddress, Service
from provisioning.steps.hosting import listen_ip

pytestmark = pytest.mark.django_db


@pytest.fixture
def ip_addon(db):
    addon = Addon.objects.create(name="Dedicated IP", slug="ip", kind=Addon.Kind.DEDICATED_IP)
    AddonPrice.objects.create(addon=addon, cycle="monthly", currency="EUR", amount=Decimal("3.00"))
    return addon


@pytest.fixture
def pool(node):
    shared = IPAddress.objects.create(address="192.0.2.1", node=node)
    dedicated = IPAddress.objects.create(
        address="192.0.2.50", node=node, kind=IPAddress.Kind.DEDICATED
    )
    return shared, dedicated


def buy(customer, plan, addons, domain) -> Service:
    """Place and pay an order; the paid order hands the account to provisioning."""
    order = services.order_place(
        customer=customer, plan=plan, cycle="monthly", domain=domain, addons=addons
    )
    invoice = Invoice.objects.get(order=order)
    services.payment_record(invoice=invoice, amount=invoice.total, currency="EUR", gateway="manual")
    sub = services.order_fulfil(order_id=order.pk)
    assert sub is not None
    return Service.objects.select_related("ip", "plan").get(pk=sub.service_id)


def test_extra_storage_raises_the_disk_limit(customer, plan, storage_addon, tax_rates, pool):
    service = buy(customer, plan, [storage_addon], "storage.example.com")
    # then the account's limit is the plan's disk and the 10 GB bought
    assert service.extra_disk_mb == 10_000
    assert service.disk_limit_mb == plan.disk_mb + 10_000
    disk = service_usage(service=service)[0]
    assert disk.limit == plan.disk_mb + 10_000
    # and an account without it keeps the plan's disk
    other = buy(customer, plan, [], "plain.example.com")
    assert other.disk_limit_mb == plan.disk_mb


def test_a_dedicated_ip_is_taken_from_the_pool_and_the_site_listens_on_it(
    customer, plan, ip_addon, tax_rates, pool
):
    _shared, dedicated = pool
    service = buy(customer, plan, [ip_addon], "own-ip.example.com")
    # then the account holds the node's dedicated address
    assert service.ip == dedicated
    # and its nginx server block listens on that address only
    # (the node agent builds the block from the address the step sends)
    config = sites.site_config(
        service=service.pk, user=service.username, domain=service.domain, ip=listen_ip(service)
    )
    assert "listen 192.0.2.50:80;" in config
    # while an account without the add-on gets the shared address
    plain = buy(customer, plan, [], "shared-ip.example.com")
    assert plain.ip is not None and plain.ip.kind == IPAddress.Kind.SHARED
    assert listen_ip(plain) == ""
    assert "listen 80;" in sites.site_config(
        service=plain.pk, user=plain.username, domain=plain.domain, ip=listen_ip(plain)
    )


def test_without_a_free_address_the_add_on_is_neither_offered_nor_sold(
    client, owner, customer, plan, ip_addon, tax_rates, pool
):
    buy(customer, plan, [ip_addon], "first.example.com")
    # when the pool has no dedicated address left, checkout refuses it and charges nothing
    before = Invoice.objects.count()
    with pytest.raises(services.BillingError, match="No dedicated IP address is free"):
        services.order_place(
            customer=customer,
            plan=plan,
            cycle="monthly",
            domain="second.example.com",
            addons=[ip_addon],
        )
    assert Invoice.objects.count() == before
    # and the order page does not offer it
    client.force_login(owner)
    page = client.get(f"/order/{plan.slug}/").content.decode()
    assert "Dedicated IP" not in page
    # until staff add an address
    IPAddress.objects.create(address="192.0.2.51", node=pool[0].node, kind=IPAddress.Kind.DEDICATED)
    assert "Dedicated IP" in client.get(f"/order/{plan.slug}/").content.decode()


def test_a_plan_with_its_own_dedicated_ip_is_not_sold_a_second_one(
    customer, plan, ip_addon, tax_rates, pool
):
    plan.dedicated_ip = True
    plan.save(update_fields=["dedicated_ip"])
    with pytest.raises(services.BillingError, match="already includes a dedicated IP"):
        services.order_place(
            customer=customer, plan=plan, cycle="monthly", domain="x.example.com", addons=[ip_addon]
        )
