"""Factories for the support desk tests."""

from __future__ import annotations

import factory

from provisioning.models import Service
from support.models import CannedReply, Department, Ticket, TicketMessage
from tests.factories import CustomerFactory, PlanFactory


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department
        django_get_or_create = ("name",)

    name = "Technical support"
    email = "tech@support.example.com"


class TicketFactory(factory.django.DjangoModelFactory):
    """A bare ticket row; tests that care about messages use the services."""

    class Meta:
        model = Ticket

    customer = factory.SubFactory(CustomerFactory)
    department = factory.SubFactory(DepartmentFactory)
    subject = factory.Sequence(lambda n: f"Question {n}")


class TicketMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TicketMessage

    ticket = factory.SubFactory(TicketFactory)
    kind = "customer"
    body = "Hello"


class CannedReplyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CannedReply

    title = "Clear your cache"
    body = "Please clear your browser cache and try again."


class ServiceFactory(factory.django.DjangoModelFactory):
    """A hosting account row as the support desk sees it (no node work)."""

    class Meta:
        model = Service

    customer = factory.SubFactory(CustomerFactory)
    plan = factory.SubFactory(PlanFactory)
    username = factory.Sequence(lambda n: f"site{n}")
    domain = factory.Sequence(lambda n: f"site{n}.example.org")
