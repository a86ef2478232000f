"""A customer buys a plan, pays through the Stripe stand-in, and the service is built on the
real test node; the renewal card charge fails, the service is suspended, the customer pays,
and it comes back. Real PostgreSQL, a real Celery worker, the real node."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from billing import automation
from billing.models import Invoice, Order, Subscription
from provisioning.models import Operation, Service
from tests.billing.conftest import deliver
from tests.node.harness import http_get, wait_for_operation

pytestmark = [
    pytest.mark.node,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    # (the account it builds is terminated at the end: nothing of it stays on the node)
    pytest.mark.usefixtures("services_terminated_after"),
]
DOMAIN = "billing-e2e.example"


def _pay_on_the_hosted_page(client, stripe_standin, invoice: Invoice, card: str) -> None:
    """The customer clicks Pay, types a card on the processor's page; Stripe sends events."""
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/")
    assert response.status_code == 302
    session_id = response["Location"].rsplit("/", 1)[1]
    before = len(stripe_standin.events)
    status, body = stripe_standin.complete_session(session_id, card)
    assert status == 200, body
    for event in stripe_standin.events[before:]:
        assert deliver(client, event).status_code == 200


def _service(pk: int) -> Service:
    return Service.objects.get(pk=pk)


def _served(domain: str, status: int) -> tuple[int, str]:
    """What nginx answers for ``domain``, waiting out a graceful reload (old workers finish
    their connections on the previous configuration)."""
    for _ in range(50):
        answer = http_get(domain)
        if answer[0] == status:
            return answer
        time.sleep(0.2)
    return answer


def test_buy_pay_provision_renewal_fails_suspend_pay_unsuspend(
    client,
    owner,
    customer,
    plan,
    tax_rates,
    billing_settings,
    stripe_standin,
    worker,
    hosting_node,
):
    # given a signed-in customer who picks a plan for a domain and checks out
    client.force_login(owner)
    response = client.post("/order/starter/", {"domain": DOMAIN, "cycle": "monthly", "coupon": ""})
    assert response.status_code == 302
    response = client.post("/checkout/")
    order = Order.objects.get(customer=customer)
    invoice = Invoice.objects.get(order=order)
    # when they pay with a card that works today but is declined later
    _pay_on_the_hosted_page(client, stripe_standin, invoice, "4000000000000341")

    # then the order is paid and the service is built on the node by the worker
    order.refresh_from_db()
    assert order.state == Order.State.PAID and order.fulfilled_at is not None
    sub = Subscription.objects.get(order=order)
    assert sub.payment_method is not None and sub.payment_method.last4 == "0341"
    create = wait_for_operation(sub.service.operations.get(kind=Operation.Kind.CREATE))
    assert create.state == Operation.State.COMPLETED, create.reason
    assert _service(sub.service_id).state == Service.State.ACTIVE
    status, _body = _served(DOMAIN, 200)
    assert status == 200

    # when the clock reaches the renewal: invoice 14 days before, card declined on the day
    due = sub.next_due_date
    automation.billing_run(today=due - dt.timedelta(days=14))
    renewal = Invoice.objects.get(subscription=sub, kind=Invoice.Kind.RENEWAL)
    declined = automation.billing_run(today=due)
    assert declined.counts["charges_failed"] == 1
    # and the grace days pass without payment
    run = automation.billing_run(today=due + dt.timedelta(days=7))
    assert run.counts["suspended"] == 1

    # then the service is suspended on the node
    suspend = wait_for_operation(sub.service.operations.get(kind=Operation.Kind.SUSPEND))
    assert suspend.state == Operation.State.COMPLETED, suspend.reason
    assert _service(sub.service_id).state == Service.State.SUSPENDED
    status, body = _served(DOMAIN, 503)
    assert status == 503 and "suspended" in body

    # when the customer pays the overdue invoice with a card that works
    _pay_on_the_hosted_page(client, stripe_standin, renewal, "4242424242424242")

    # then the invoice is paid, the non-payment reason lifted, and the site is back
    renewal.refresh_from_db()
    assert renewal.state == Invoice.State.PAID
    unsuspend = wait_for_operation(sub.service.operations.get(kind=Operation.Kind.UNSUSPEND))
    assert unsuspend.state == Operation.State.COMPLETED, unsuspend.reason
    service = _service(sub.service_id)
    assert service.state == Service.State.ACTIVE and service.suspension_reasons == []
    status, body = _served(DOMAIN, 200)
    assert status == 200, body
    sub.refresh_from_db()
    assert sub.next_due_date > due
