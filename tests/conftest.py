"""Fixtures for the whole suite: named users (owner, teammate, stranger)."""

from __future__ import annotations

import pytest

from accounts.models import Customer, Membership, User
from tests.factories import CustomerFactory, MembershipFactory, UserFactory

# The real hosting node on loopback and the provisioning worker (see tests/node/harness.py).
pytest_plugins = ["tests.node.harness"]


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
