"""Fixtures for the whole suite: named users (owner, teammate, stranger)."""

from __future__ import annotations

import pytest

from accounts.models import Customer, Membership, User
from tests.factories import CustomerFactory, MembershipFactory, UserFactory

# The real hosting node on loopback and the provisioning worker (see tests/node/harness.py).
# The lab of Debian 12 nodes with systemd on a bridge (see tests/lab/plugin.py).
# The check that the session leaves no zone, mail domain, maildir, certificate or backup of
# its own on the loopback node (see tests/node/leftovers.py).
pytest_plugins = ["tests.node.harness", "tests.lab.plugin", "tests.node.leftovers"]


@pytest.fixture(autouse=True)
def _worker_quiet_before_flush(request):
    """After a transactional test, let the session's Celery worker go quiet before the flush.

    Such a test may queue provisioning work that the shared worker then runs against the test
    database; flushing the tables (TRUNCATE) while that worker is inside a transaction can
    deadlock. Queued work is dropped and a step in progress is given time to finish.
    (pytest-django's own autouse fixture is set up before this one, so this teardown runs
    before its flush.)
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or (
        "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
    )
    yield
    if transactional:
        from tests.node.harness import quiet_worker

        quiet_worker()


@pytest.fixture
def customer(db) -> Customer:
    return CustomerFactory.create(name="Olivia Owner")


@pytest.fixture
def owner(customer) -> User:
    user = UserFactory.create(email="olivia@example.com", full_name="Olivia Owner")
    MembershipFactory.create(customer=customer, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def teammate(customer) -> User:
    user = UserFactory.create(email="tom@example.com", full_name="Tom Teammate")
    MembershipFactory.create(customer=customer, user=user, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def stranger(db) -> User:
    user = UserFactory.create(email="sam@example.net", full_name="Sam Stranger")
    MembershipFactory.create(user=user, customer=CustomerFactory.create(name="Sam Stranger"))
    return user
