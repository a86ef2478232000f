"""Who may do what in the admin: one table, checked against every registered admin and role.

The table lists every action of every registered ModelAdmin (Django's bulk delete included)
and the staff buttons that are not actions (impersonation, the ticket reply, the SLA page).
A new action without a line here fails ``test_the_table_covers_every_action``; each line is
checked for every role and for a staff member in no group: offered (or not) on the list
page, and when not allowed, a forged POST of it runs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.sites import AdminSite
from django.urls import reverse

from accounts.models import AuditLog, User
from accounts.roles import ADMINISTRATOR, BILLING, SUPPORT_AGENT
from billing import services as billing
from billing.models import CreditNote, Invoice, Payment
from provisioning.models import Operation, Service
from support.models import Ticket, TicketMessage
from tests.billing.conftest import deliver
from tests.staff import make_staff, sign_in_staff
from tests.support.factories import DepartmentFactory

pytestmark = pytest.mark.django_db

S, B, A = SUPPORT_AGENT, BILLING, ADMINISTRATOR
NO_GROUP = "staff in no group"
ROLES = (S, B, A, NO_GROUP)
NOBODY: frozenset[str] = frozenset()

# (model, action) -> the roles that may do it. Superusers may do everything.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    # Sign-in records: administrators only
    ("account.emailaddress", "delete_selected"): frozenset({A}),
    ("account.emailaddress", "make_verified"): frozenset({A}),
    ("auth.group", "delete_selected"): frozenset({A}),
    ("mfa.authenticator", "delete_selected"): frozenset({A}),
    ("usersessions.usersession", "delete_selected"): frozenset({A}),
    # Customers and users
    ("accounts.user", "delete_selected"): frozenset({A}),
    ("accounts.customer", "delete_selected"): frozenset({A}),
    ("accounts.customer", "impersonate"): frozenset({S, A}),
    ("accounts.auditlog", "delete_selected"): NOBODY,
    # The API's keys and webhooks
    ("api.apitoken", "delete_selected"): frozenset({A}),
    ("api.provisioningclient", "delete_selected"): frozenset({A}),
    ("api.provisioningclient", "issue_key"): frozenset({A}),
    ("api.provisioningclient", "rotate_key"): frozenset({A}),
    ("api.webhookendpoint", "delete_selected"): frozenset({A}),
    ("api.webhookevent", "delete_selected"): frozenset({A}),
    ("api.webhookdelivery", "delete_selected"): frozenset({A}),
    ("api.webhookdelivery", "replay"): frozenset({A}),
    # Money: billing staff and administrators
    ("billing.product", "delete_selected"): frozenset({B, A}),
    ("billing.plan", "delete_selected"): frozenset({B, A}),
    ("billing.addon", "delete_selected"): frozenset({B, A}),
    ("billing.coupon", "delete_selected"): frozenset({B, A}),
    ("billing.taxrate", "delete_selected"): frozenset({B, A}),
    ("billing.invoice", "delete_selected"): NOBODY,
    ("billing.invoice", "mark_paid_manually"): frozenset({B, A}),
    ("billing.invoice", "charge_saved_card"): frozenset({B, A}),
    ("billing.invoice", "cancel_unpaid_by_credit_note"): frozenset({B, A}),
    ("billing.order", "delete_selected"): frozenset({B, A}),
    ("billing.subscription", "delete_selected"): frozenset({B, A}),
    ("billing.payment", "delete_selected"): NOBODY,
    ("billing.payment", "refund_in_full"): frozenset({B, A}),
    ("billing.creditnote", "delete_selected"): NOBODY,
    ("billing.creditentry", "delete_selected"): NOBODY,
    ("billing.paymentmethod", "delete_selected"): frozenset({B, A}),
    ("billing.stripeevent", "delete_selected"): frozenset({B, A}),
    ("billing.billingrun", "delete_selected"): frozenset({B, A}),
    ("billing.billingsettings", "delete_selected"): NOBODY,
    # Hosting: support agents run the day-to-day actions, administrators everything
    ("provisioning.nodegroup", "delete_selected"): frozenset({A}),
    ("provisioning.node", "delete_selected"): frozenset({A}),
    ("provisioning.node", "check_now"): frozenset({S, A}),
    ("provisioning.node", "drain"): frozenset({A}),
    ("provisioning.node", "activate"): frozenset({A}),
    ("provisioning.node", "repin_host_key"): frozenset({A}),
    ("provisioning.ipaddress", "delete_selected"): frozenset({A}),
    ("provisioning.service", "delete_selected"): NOBODY,
    ("provisioning.service", "suspend"): frozenset({S, A}),
    ("provisioning.service", "unsuspend"): frozenset({S, A}),
    ("provisioning.service", "terminate"): frozenset({A}),
    ("provisioning.service", "move_to_node"): frozenset({A}),
    ("provisioning.operation", "delete_selected"): NOBODY,
    ("provisioning.operation", "retry"): frozenset({S, A}),
    ("provisioning.operation", "rollback"): frozenset({S, A}),
    ("provisioning.driftfinding", "delete_selected"): frozenset({A}),
    ("provisioning.driftfinding", "repair"): frozenset({S, A}),
    ("provisioning.driftfinding", "check_nodes_now"): frozenset({S, A}),
    # The support desk
    ("support.department", "delete_selected"): frozenset({S, A}),
    ("support.cannedreply", "delete_selected"): frozenset({S, A}),
    ("support.ticket", "delete_selected"): frozenset({A}),
    ("support.ticket", "assign_to_me"): frozenset({S, A}),
    ("support.ticket", "resolve_tickets"): frozenset({S, A}),
    ("support.ticket", "close_tickets"): frozenset({S, A}),
    ("support.ticket", "reply"): frozenset({S, A}),
    ("support.ticket", "sla"): frozenset({S, B, A}),
}

# Staff pages and buttons that are not list actions (each has its own check below).
BUTTONS = {
    ("accounts.customer", "impersonate"),
    ("support.ticket", "reply"),
    ("support.ticket", "sla"),
}


def registered_actions(site: AdminSite = admin.site) -> Iterator[tuple[str, str, Any]]:
    for model_cls, model_admin in site._registry.items():
        for func, name, _description in model_admin._get_base_actions():  # type: ignore[attr-defined]
            yield model_cls._meta.label_lower, name, func


def test_the_table_covers_every_action() -> None:
    actions = {(model, name) for model, name, _ in registered_actions()}
    missing = sorted(actions - set(MATRIX))
    assert not missing, f"actions with no line in the role table: {missing}"
    stale = sorted(set(MATRIX) - actions - BUTTONS)
    assert not stale, f"lines for actions that no longer exist: {stale}"


def test_every_action_states_the_permission_it_needs() -> None:
    for model, name, func in registered_actions():
        assert getattr(func, "allowed_permissions", None), f"{model} {name} names no permission"


@pytest.fixture
def people(db) -> dict[str, User]:
    return {
        S: make_staff("sue.support@staff.example.com", S),
        B: make_staff("ben.billing@staff.example.com", B),
        A: make_staff("ada.admin@staff.example.com", A),
        NO_GROUP: make_staff("nils.nogroup@staff.example.com"),
    }


@pytest.fixture
def world(customer, owner, plan, tax_rates, node, stripe_standin, client):
    """One of everything the money and hosting actions act on."""
    unpaid = Invoice.objects.get(
        order=billing.order_place(
            customer=customer, plan=plan, cycle="monthly", domain="unpaid.example.com"
        )
    )
    order = billing.order_place(
        customer=customer, plan=plan, cycle="monthly", domain="paid.example.com"
    )
    paid = Invoice.objects.get(order=order)
    url = billing.invoice_checkout_start(
        invoice=paid, success_url="http://testserver/ok", cancel_url="http://testserver/no"
    )
    before = len(stripe_standin.events)
    status, body = stripe_standin.complete_session(url.rsplit("/", 1)[1], "4242424242424242")
    assert status == 200, body
    for event in stripe_standin.events[before:]:
        deliver(client, event)
    payment = Payment.objects.get(invoice=paid, gateway="stripe")
    service = Service.objects.create(
        customer=customer, plan=plan, node=node, domain="hosted.example.com",
        username="hosted1", state="active",
    )  # fmt: skip
    failed = Operation.objects.create(service=service, kind="create")
    Operation.objects.filter(pk=failed.pk).update(state="failed")
    department = DepartmentFactory.create()
    from support.services import ticket_open

    ticket = ticket_open(
        customer=customer, user=owner, department=department, subject="Help", body="My site"
    )
    return {
        "unpaid": unpaid,
        "paid": paid,
        "payment": payment,
        "service": service,
        "failed": failed,
        "ticket": ticket,
    }


def _refunds(stripe_standin) -> list[dict[str, Any]]:
    return [o for o in stripe_standin.objects.values() if o["object"] == "refund"]


def _changelist(model: str) -> str:
    app_label, model_name = model.split(".")
    return reverse(f"admin:{app_label}_{model_name}_changelist")


def _spy(func: Callable[..., Any], calls: list[tuple[str, str]], key: tuple[str, str]) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(key)
        return func(*args, **kwargs)

    return wrapper


def test_each_role_is_offered_exactly_its_actions_and_nothing_else_runs(
    client,
    people,
    world,
    stripe_standin,
    monkeypatch,
) -> None:
    # given every action of every admin, watched for being run
    calls: list[tuple[str, str]] = []
    models = {m._meta.label_lower: m for m in admin.site._registry}
    for label, model_admin in ((m._meta.label_lower, a) for m, a in admin.site._registry.items()):
        for action in model_admin.actions or ():
            assert isinstance(action, str)
            func = getattr(type(model_admin), action)
            monkeypatch.setattr(type(model_admin), action, _spy(func, calls, (label, action)))
    delete_selected = admin.site._actions["delete_selected"]
    monkeypatch.setitem(
        admin.site._actions, "delete_selected", _spy(delete_selected, calls, ("*", "delete"))
    )
    actions = sorted({(m, n) for m, n, _ in registered_actions()})
    refunds_before = len(_refunds(stripe_standin))

    for role in ROLES:
        sign_in_staff(client, people[role])
        offers: dict[str, set[str]] = {}
        for model in sorted({m for m, _ in actions}):
            response = client.get(_changelist(model))
            form = response.context["action_form"] if response.status_code == 200 else None
            offers[model] = {value for value, _ in form.fields["action"].choices} if form else set()
        for model, name in actions:
            allowed = role in MATRIX[(model, name)]
            # when the role opens the list page, then the action is offered only if allowed
            offered = name in offers[model]
            assert offered == allowed, f"{role}: {model} {name} offered={offered}"
            if allowed:
                continue
            # and when it is posted anyway, nothing runs
            rows = models[model]._default_manager.values_list("pk", flat=True)
            pks = [str(pk) for pk in rows]
            client.post(
                _changelist(model),
                {"action": name, "_selected_action": pks or ["1"], "index": "0", "post": "yes"},
            )
            assert not calls, f"{role}: {model} {name} ran: {calls}"

    # then no money moved and no hosting changed
    assert len(_refunds(stripe_standin)) == refunds_before
    assert not Payment.objects.filter(kind="refund").exists()
    assert not CreditNote.objects.exists()
    world["unpaid"].refresh_from_db()
    assert world["unpaid"].state == Invoice.State.ISSUED
    assert not world["unpaid"].payments.exists()
    assert Service.objects.get(pk=world["service"].pk).state == "active"
    assert list(Operation.objects.values_list("state", flat=True)) == ["failed"]
    assert Payment.objects.filter(pk=world["payment"].pk).exists()


def test_support_cannot_refund_and_billing_can(client, people, world, stripe_standin):
    # given a card payment
    payment = world["payment"]
    data = {"action": "refund_in_full", "_selected_action": [payment.pk], "index": "0"}
    before = len(_refunds(stripe_standin))
    # when a support agent posts the refund, then the card processor hears nothing
    sign_in_staff(client, people[S])
    client.post(_changelist("billing.payment"), data)
    assert len(_refunds(stripe_standin)) == before
    # when billing staff post it, then the refund reaches the card processor once
    sign_in_staff(client, people[B])
    client.post(_changelist("billing.payment"), data)
    assert [r["amount"] for r in _refunds(stripe_standin)[before:]] == [
        int(payment.amount * Decimal(100))
    ]
    assert Payment.objects.filter(kind="refund").count() == 1


def test_billing_cannot_touch_hosting_and_support_can(client, people, world) -> None:
    service = world["service"]
    data = {"_selected_action": [service.pk], "index": "0"}
    sign_in_staff(client, people[B])
    for action in ("suspend", "terminate"):
        client.post(_changelist("provisioning.service"), {**data, "action": action})
    assert not Operation.objects.filter(kind__in=["suspend", "terminate"]).exists()
    sign_in_staff(client, people[S])
    client.post(_changelist("provisioning.service"), {**data, "action": "suspend"})
    assert Operation.objects.filter(service=service, kind="suspend").count() == 1
    client.post(_changelist("provisioning.service"), {**data, "action": "terminate"})
    assert not Operation.objects.filter(kind="terminate").exists()


@pytest.mark.parametrize("role", ROLES)
def test_buttons_outside_the_action_lists_check_the_role_too(client, people, world, role):
    customer = world["ticket"].customer
    ticket = world["ticket"]

    # Impersonation: allowed roles end up signed in as the owner, others are refused
    sign_in_staff(client, people[role])
    allowed = role in MATRIX[("accounts.customer", "impersonate")]
    response = client.post(reverse("admin:accounts_customer_impersonate", args=[customer.pk]))
    started = AuditLog.objects.filter(action="panel.impersonation.started").exists()
    assert started == allowed, role
    if not allowed:
        assert response.status_code in (302, 403)
        assert int(client.session["_auth_user_id"]) == people[role].pk
    else:
        client.post(reverse("panel:impersonation_stop"))

    # The ticket reply
    sign_in_staff(client, people[role])
    messages_before = TicketMessage.objects.filter(ticket=ticket).count()
    client.post(
        reverse("admin:support_ticket_reply", args=[ticket.pk]),
        {"kind": "note", "body": f"note by {role}"},
    )
    added = TicketMessage.objects.filter(ticket=ticket).count() - messages_before
    assert added == (1 if role in MATRIX[("support.ticket", "reply")] else 0), role
    assert Ticket.objects.filter(pk=ticket.pk).exists()

    # The SLA page
    response = client.get(reverse("admin:support_ticket_sla"))
    shown = response.status_code == 200 and "Support SLA" in response.content.decode()
    assert shown == (role in MATRIX[("support.ticket", "sla")]), role


def test_billing_corrects_a_customers_billing_identity_and_support_only_reads_it(
    client, people, customer
) -> None:
    page = reverse("admin:accounts_customer_change", args=[customer.pk])
    # given the customer's admin page
    editable = {}
    for role in (S, B, A, NO_GROUP):
        sign_in_staff(client, people[role])
        response = client.get(page)
        editable[role] = (
            response.status_code == 200 and 'name="company"' in response.content.decode()
        )
    # then billing staff and administrators can change it, support agents only read it
    assert editable == {S: False, B: True, A: True, NO_GROUP: False}
