"""The service layer without a node: validation, placement, refusals, suspension reasons."""

from __future__ import annotations

import pytest

from provisioning import selectors, services
from provisioning.errors import ProvisioningRefused
from provisioning.models import IPAddress, Node, Operation, OperationEvent, Service
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    node = Node.objects.create(
        name="web1",
        address="127.0.0.1",
        port=2222,
        roles=["web"],
        capacity_accounts=10,
        host_key="ssh-ed25519 AAAA",
    )
    IPAddress.objects.create(address="192.0.2.1", node=node)
    IPAddress.objects.create(address="192.0.2.2", node=node)
    IPAddress.objects.create(address="192.0.2.10", node=node, kind=IPAddress.Kind.DEDICATED)
    return node


@pytest.fixture
def plan():
    return PlanFactory.create()


def _activate(service: Service) -> Service:
    """Finish the create operation as the worker would (no node in these tests)."""
    Operation.objects.filter(service=service).update(state="completed")
    Service.objects.filter(pk=service.pk).update(state="active")
    return Service.objects.get(pk=service.pk)


def test_order_places_the_service_and_queues_one_create(customer, node, plan):
    # when a customer orders
    service = services.service_order(customer=customer, plan=plan, domain="Shop.Example.com")

    # then the service is pending on the node with a prefixed Linux user and the domain in ASCII
    assert service.state == Service.State.PENDING
    assert service.node == node and service.domain == "shop.example.com"
    assert service.username.startswith("hw") and service.username.isalnum()
    # and one create operation is queued, with its first event
    op = service.operations.get()
    assert (op.kind, op.state) == ("create", "queued")
    assert OperationEvent.objects.filter(operation=op, to_state="queued").count() == 1


def test_a_second_request_while_an_operation_runs_is_refused(customer, node, plan):
    # given a service whose create operation is still queued
    service = services.service_order(customer=customer, plan=plan, domain="busy.example.com")

    # when someone asks to terminate it
    with pytest.raises(ProvisioningRefused) as exc:
        services.service_terminate(service=service)

    # then the refusal says why, and there is still only one operation
    assert "pending" in exc.value.messages[0] or "running" in exc.value.messages[0]
    with pytest.raises(ProvisioningRefused, match="Another operation is running"):
        services.operation_start(service=service, kind="suspend")
    # and the same request again is told it is already under way
    with pytest.raises(ProvisioningRefused, match=r"already under way .* not started a second"):
        services.operation_start(service=service, kind="create")
    assert service.operations.count() == 1


def test_a_domain_hosted_by_another_customer_is_refused(customer, node, plan):
    # given another customer hosting example.org
    services.service_order(customer=CustomerFactory.create(), plan=plan, domain="example.org")

    # when this customer orders the same name, or a name under it
    for domain in ("example.org", "EXAMPLE.org.", "shop.example.org"):
        with pytest.raises(ProvisioningRefused, match="already hosted by another customer"):
            services.service_order(customer=customer, plan=plan, domain=domain)
    # then nothing was created for them
    assert not Service.objects.filter(customer=customer).exists()


def test_hostile_domains_are_refused_before_anything_is_created(customer, node, plan):
    for domain in ("a.com;reboot", "$(id).com", "x\n.com", "../etc.com"):
        with pytest.raises(ProvisioningRefused):
            services.service_order(customer=customer, plan=plan, domain=domain)
    assert not Service.objects.exists() and not Operation.objects.exists()


def test_placement_prefers_the_active_node_with_most_room_and_skips_draining(customer, plan, node):
    # given a second, emptier node and a third, emptiest one that is draining
    roomy = Node.objects.create(
        name="web2",
        address="127.0.0.2",
        roles=["web"],
        capacity_accounts=100,
        host_key="ssh-ed25519 AAAA",
    )
    Node.objects.create(
        name="web3",
        address="127.0.0.3",
        roles=["web"],
        capacity_accounts=1000,
        status=Node.Status.DRAINING,
        host_key="ssh-ed25519 AAAA",
    )
    Node.objects.create(
        name="mail1",
        address="127.0.0.4",
        roles=["mail"],
        capacity_accounts=5000,
        host_key="ssh-ed25519 AAAA",
    )

    # when an order is placed
    service = services.service_order(customer=customer, plan=plan, domain="placed.example.com")

    # then it goes to the active web node with the most free capacity
    assert service.node == roomy


def test_no_node_with_room_is_a_clear_refusal(customer, plan, node):
    Node.objects.update(capacity_accounts=0)
    with pytest.raises(ProvisioningRefused, match="No hosting server has room"):
        services.service_order(customer=customer, plan=plan, domain="full.example.com")


def test_shared_ips_round_robin_and_dedicated_ips_are_exclusive(customer, node, plan):
    # when three shared-IP orders are placed
    ips = [
        services.service_order(customer=customer, plan=plan, domain=f"rr{i}.example.com").ip
        for i in range(3)
    ]
    # then the two shared addresses alternate
    assert [ip.address if ip else None for ip in ips] == ["192.0.2.1", "192.0.2.2", "192.0.2.1"]

    # when a plan with a dedicated IP is ordered twice
    dedicated = PlanFactory.create(dedicated_ip=True)
    first = services.service_order(customer=customer, plan=dedicated, domain="ded1.example.com")
    # then the first gets the node's dedicated address and the second is refused
    assert first.ip is not None and first.ip.address == "192.0.2.10"
    with pytest.raises(ProvisioningRefused, match="No dedicated IP address is free"):
        services.service_order(customer=customer, plan=dedicated, domain="ded2.example.com")


def test_suspension_reasons_are_kept_apart(customer, node, plan):
    # given an active service
    service = _activate(
        services.service_order(customer=customer, plan=plan, domain="reasons.example.com")
    )

    # when billing suspends it, and staff add abuse while the suspension runs
    op = services.service_suspend(service=service, reason="non_payment")
    second = services.service_suspend(service=service, reason="abuse")

    # then one suspend operation exists, with both reasons recorded
    assert op is not None and op.kind == "suspend" and second is None
    service.refresh_from_db(fields=["suspension_reasons"])
    assert service.suspension_reasons == ["non_payment", "abuse"]

    # when the suspension has happened and the payment arrives
    Operation.objects.filter(pk=op.pk).update(state="completed")
    Service.objects.filter(pk=service.pk).update(state="suspended")
    lifted = services.service_unsuspend(service=service, reason="non_payment")

    # then nothing is queued: abuse still holds it
    assert lifted is None
    assert Service.objects.get(pk=service.pk).suspension_reasons == ["abuse"]
    # and lifting abuse queues the unsuspend
    op2 = services.service_unsuspend(service=service, reason="abuse")
    assert op2 is not None and op2.kind == "unsuspend"


def test_unknown_suspension_reason_is_refused(customer, node, plan):
    service = _activate(
        services.service_order(customer=customer, plan=plan, domain="why.example.com")
    )
    with pytest.raises(ProvisioningRefused, match="not a suspension reason"):
        services.service_suspend(service=service, reason="because")


def test_change_plan_and_retry_and_rollback_refusals(customer, node, plan):
    service = _activate(
        services.service_order(customer=customer, plan=plan, domain="plans.example.com")
    )
    with pytest.raises(ProvisioningRefused, match="already on"):
        services.service_change_plan(service=service, plan=plan)
    with pytest.raises(ProvisioningRefused, match="dedicated IP"):
        services.service_change_plan(service=service, plan=PlanFactory.create(dedicated_ip=True))
    bigger = PlanFactory.create(php_workers=8)
    op = services.service_change_plan(service=service, plan=bigger)
    assert op.params == {"plan_id": bigger.pk, "previous_plan_id": plan.pk}

    completed = Operation.objects.get(service=service, kind="create")
    with pytest.raises(ProvisioningRefused, match="cannot be rolled back"):
        services.operation_rollback(operation=completed)
    with pytest.raises(ProvisioningRefused, match="Only failed or rolled-back"):
        services.operation_retry(operation=completed)


def test_running_operation_selector(customer, node, plan):
    service = services.service_order(customer=customer, plan=plan, domain="sel.example.com")
    assert selectors.running_operation(service=service) == service.operations.get()


@pytest.mark.django_db(transaction=True)
def test_an_operation_start_locks_the_service_not_its_customer_or_plan(node, plan) -> None:
    # Given an account (its create finished)
    import psycopg
    from django.conf import settings
    from django.db import transaction

    from provisioning.services import _lock_service

    customer = CustomerFactory.create()
    service = _activate(services.service_order(customer=customer, plan=plan, domain="lock.example"))
    db = settings.DATABASES["default"]
    other = psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, dbname=db["NAME"],
        user=db["USER"], password=db["PASSWORD"], autocommit=True,
    )  # fmt: skip
    try:
        with transaction.atomic():
            # When one transaction holds the service for an operation start
            _lock_service(service)
            # Then another may still lock the customer and the plan (a second order, a worker
            # finishing another account), but not the service itself
            other.execute("SET lock_timeout = '2s'")
            other.execute("SELECT 1 FROM accounts_customer WHERE id = %s FOR UPDATE", [customer.pk])
            other.execute("SELECT 1 FROM billing_plan WHERE id = %s FOR UPDATE", [plan.pk])
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "SELECT 1 FROM provisioning_service WHERE id = %s FOR UPDATE NOWAIT",
                    [service.pk],
                )
    finally:
        other.close()
