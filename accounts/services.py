"""Writes concerning users, customers and the audit log."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction

from accounts.models import AuditLog, Customer, Membership, User


def audit_record(
    *,
    action: str,
    actor: User | None = None,
    actor_label: str = "",
    target: models.Model | None = None,
    customer: Customer | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditLog:
    """Write one audit row. ``actor`` is None when the system acted."""
    return AuditLog.objects.create(
        action=action,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else "system"),
        customer=customer,
        object_type=target._meta.label_lower if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        detail=detail or {},
    )


# No savepoint of their own: nobody catches their errors inside an outer transaction, and
# the savepoint's two extra round trips showed on every API create.
@transaction.atomic(savepoint=False)
def customer_create_for_signup(
    *, user: User, name: str, company: str, country: str, currency: str
) -> Customer:
    """Create the customer a new user signs up as, with the user as its owner."""
    customer = Customer.objects.create(
        name=name or user.email, company=company, country=country, currency=currency
    )
    Membership.objects.create(customer=customer, user=user, role=Membership.Role.OWNER)
    audit_record(action="customer.signup", actor=user, target=customer, customer=customer)
    return customer


@transaction.atomic
def customer_update_profile(*, customer: Customer, actor: User, data: dict[str, Any]) -> Customer:
    """Change a customer's billing details and note the change in the audit log."""
    changed = {k: v for k, v in data.items() if getattr(customer, k) != v}
    for key, value in changed.items():
        setattr(customer, key, value)
    if changed:
        customer.full_clean()
        customer.save(update_fields=list(changed))
        audit_record(
            action="customer.profile_updated",
            actor=actor,
            target=customer,
            customer=customer,
            detail={"fields": sorted(changed)},
        )
    return customer


@transaction.atomic(savepoint=False)
def customer_create_for_api(
    *, name: str, email: str, country: str, currency: str = "", company: str = ""
) -> Customer:
    """The customer an outside billing system names by e-mail: reuse the one that e-mail owns,
    or create it with a user who sets a password through "forgot password"."""
    from django.conf import settings

    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        owned = Customer.objects.filter(
            memberships__user=user, memberships__role=Membership.Role.OWNER
        ).first()
        if owned is not None:
            return owned
    else:
        user = User.objects.create_user(email=email, password=None, full_name=name)
    return customer_create_for_signup(
        user=user,
        name=name,
        company=company,
        country=country,
        currency=currency or settings.DEFAULT_CURRENCY,
    )
