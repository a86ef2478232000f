"""factory_boy factories shared by the whole suite."""

from __future__ import annotations

import factory

from accounts.models import Customer, Membership, User
from billing.models import Plan, Product


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def _save(obj: User, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            obj.save()


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    country = "DE"
    currency = "EUR"


class MembershipFactory(factory.django.DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    customer = factory.SubFactory(CustomerFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.OWNER


class ProductFactory(factory.django.DjangoModelFactory[Product]):
    class Meta:
        model = Product
        django_get_or_create = ("slug",)

    name = "Shared hosting"
    slug = "shared-hosting"


class PlanFactory(factory.django.DjangoModelFactory[Plan]):
    class Meta:
        model = Plan

    product = factory.SubFactory(ProductFactory)
    name = factory.Sequence(lambda n: f"Plan {n}")
    slug = factory.Sequence(lambda n: f"plan-{n}")
    disk_mb = 1000
    bandwidth_gb = 10
    sites = 1
    databases = 2
    mailboxes = 5
    memory_mb = 256
    cpu_percent = 50
    processes = 32
