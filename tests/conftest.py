"""Fixtures for the whole suite: named users (owner, teammate, stranger)."""

from __future__ import annotations

import pytest

from accounts.models import Customer, Membership, User
from tests.factories import CustomerFactory, MembershipFactory, UserFactory


@pytest.fixture
def customer(db) -> Customer:
    return CustomerFactory(name="Olivia Owner")


@pytest.fixture
def owner(customer) -> User:
    user = UserFactory(email="olivia@example.com", full_name="Olivia Owner")
    MembershipFactory(customer=customer, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def teammate(customer) -> User:
    user = UserFactory(email="tom@example.com", full_name="Tom Teammate")
    MembershipFactory(customer=customer, user=user, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def stranger(db) -> User:
    user = UserFactory(email="sam@example.net", full_name="Sam Stranger")
    MembershipFactory(user=user, customer=CustomerFactory(name="Sam Stranger"))
    return user
