"""What a service holds on a node (``NodeResource`` rows): recorded by steps through the step
context, one live holder per node, kind and name, undone only by the operation that made it.

These tests drive ``StepContext`` directly (no node is asked anything); the same rules on the
real node are in ``tests/node/test_tenancy.py``.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from provisioning.errors import PermanentStepError
from provisioning.models import Node, NodeResource, Operation, Service, StepRun
from provisioning.steps.base import StepContext
from tests.factories import CustomerFactory, PlanFactory

pytestmark = pytest.mark.django_db

KIND = NodeResource.Kind


@pytest.fixture
def node() -> Node:
    return Node.objects.create(name="web1", address="127.0.0.1", roles=["web", "dns", "mail"])


def make(node: Node, domain: str, username: str, state: str = "active") -> Service:
    service = Service.objects.create(
        customer=CustomerFactory.create(),
        plan=PlanFactory.create(),
        node=node,
        domain=domain,
        username=username,
    )
    Service.objects.filter(pk=service.pk).update(state=state)
    return Service.objects.select_related("node").get(pk=service.pk)


def context(service: Service, kind: str = "create", position: int = 1) -> StepContext:
    # (finished operations: one service may have only one running at a time)
    operation = Operation.objects.create(service=service, kind=kind)
    Operation.objects.filter(pk=operation.pk).update(state="completed")
    run = StepRun.objects.create(
        operation=operation, position=position, step="s", node=service.node
    )
    return StepContext(operation=operation, step_run=run)


def step_of(ctx: StepContext, position: int) -> StepContext:
    """Another step of the same operation."""
    run = StepRun.objects.create(
        operation=ctx.operation, position=position, step=f"s{position}", node=ctx.node
    )
    return StepContext(operation=ctx.operation, step_run=run)


def test_own_records_the_maker_and_a_second_own_keeps_it(node) -> None:
    # given a service whose create step made its zone
    service = make(node, "alpha.example", "alpha")
    ctx = context(service)
    row = ctx.own(KIND.ZONE, "alpha.example", created=True)
    # when a later operation (a repair) finds the zone there and records it again
    later = context(service, kind="repair")
    again = later.own(KIND.ZONE, "alpha.example", created=False, detail={"seen": 1})
    # then it is the same row, still the first operation's
    assert again.pk == row.pk
    row.refresh_from_db()
    assert row.operation_id == ctx.operation.pk and row.created and row.detail == {"seen": 1}
    assert NodeResource.objects.filter(service=service).count() == 1


def test_a_live_holder_is_refused_and_a_dead_one_is_taken_over(node) -> None:
    # given customer A's live service holding a zone and a mail domain
    a = make(node, "shared.example", "alpha")
    a_ctx = context(a)
    a_ctx.own(KIND.ZONE, "shared.example")
    # when customer B's service tries to take the same zone
    b = make(node, "other.example", "bravo", state="pending")
    b_ctx = context(b)
    # then it is refused before anything is sent to the node (a clean, permanent failure)
    with pytest.raises(PermanentStepError) as refused:
        b_ctx.check_free(KIND.ZONE, "SHARED.example")
    assert refused.value.clean and "another account" in refused.value.message
    with pytest.raises(PermanentStepError):
        b_ctx.own(KIND.ZONE, "shared.example")
    # when A's service is terminated (its row left behind) and B takes the name
    Service.objects.filter(pk=a.pk).update(state="terminated")
    taken = b_ctx.own(KIND.ZONE, "shared.example", created=True)
    # then B holds it, as found there (not made by B), and A's row is gone
    assert taken.service_id == b.pk and taken.created is False
    old = NodeResource.objects.get(service=a)
    assert old.state == NodeResource.State.GONE
    assert old.detail["taken_over_by_service"] == b.pk


def test_the_database_keeps_one_live_holder_per_node_kind_and_name(node) -> None:
    a = make(node, "a.example", "alpha")
    b = make(node, "b.example", "bravo")
    NodeResource.objects.create(service=a, node=node, kind=KIND.MAIL_DOMAIN, name="x.example")
    with pytest.raises(IntegrityError), transaction.atomic():
        NodeResource.objects.create(service=b, node=node, kind=KIND.MAIL_DOMAIN, name="X.example")
    # a gone row does not count, and another node may hold the same name
    NodeResource.objects.create(
        service=b, node=node, kind=KIND.MAIL_DOMAIN, name="x.example", state="gone"
    )
    other = Node.objects.create(name="web2", address="127.0.0.2")
    NodeResource.objects.create(service=b, node=other, kind=KIND.MAIL_DOMAIN, name="x.example")


def test_an_undo_sees_only_what_its_own_step_of_its_own_operation_recorded(node) -> None:
    # given a database the account had before, and one this operation's step made
    service = make(node, "gamma.example", "gamma")
    earlier = context(service)
    earlier.own(KIND.DATABASE, "gamma_old")
    ctx = context(service, kind="database_create", position=1)
    ctx.own(KIND.DATABASE, "gamma_new", created=True)
    ctx.own(KIND.DATABASE_USER, "gamma_found", created=False)
    other_step = step_of(ctx, 2)
    other_step.own(KIND.DATABASE_USER, "gamma_u", created=True)
    # then the step's undo sees its own two rows only
    assert [r.name for r in ctx.made_here()] == ["gamma_new", "gamma_found"]
    assert [r.name for r in ctx.made_here(KIND.DATABASE)] == ["gamma_new"]
    # and the service holds all four
    assert len(ctx.owned()) == 4
    # when the rows go, they are marked gone with the operation that removed them
    ctx.disown(ctx.made_here())
    assert {r.name for r in ctx.owned()} == {"gamma_old", "gamma_u"}
    gone = NodeResource.objects.get(name="gamma_new")
    assert gone.state == "gone" and gone.removed_by_id == ctx.operation.pk
    assert gone.removed_at is not None


def test_the_service_admin_page_lists_what_the_service_holds(client, node) -> None:
    from allauth.mfa.models import Authenticator
    from django.urls import reverse

    from tests.factories import UserFactory
    from tests.staff import sign_in_staff

    # given a service holding a zone and a mailbox, and a database it no longer holds
    service = make(node, "delta.example", "delta")
    ctx = context(service)
    ctx.own(KIND.ZONE, "delta.example")
    ctx.own(KIND.MAILBOX, "info@delta.example", detail={"quota_mb": 5})
    ctx.disown([ctx.own(KIND.DATABASE, "delta_old")])
    staff = UserFactory.create(email="ops@staff.example.com", is_staff=True, is_superuser=True)
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    sign_in_staff(client, staff)

    # when staff open the service
    page = client.get(reverse("admin:provisioning_service_change", args=[service.pk]))

    # then its rows are there with their state and the operation that made them
    html = page.content.decode()
    assert page.status_code == 200
    assert "Resources on the node" in html
    assert "info@delta.example" in html and "delta.example" in html
    assert "delta_old" in html and "Gone" in html
