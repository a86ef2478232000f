"""Staff roles as Django groups, with the permissions each role carries.

Roles are kept in code so that every deployment has the same ones; running migrations
brings the groups to exactly these permissions (a permission added to a group by hand is
taken away again).

What each role is for:

- Support agent: answers tickets (deleting one is left to administrators); sees customers,
  billing (read only) and services; may sign in as a customer, suspend and lift a staff
  suspension (abuse), retry and roll back failed operations, check nodes and repair drift.
  Never touches money (no mark paid, card charge, refund or credit note) and never
  terminates an account or drains a node.
- Billing: money. Full billing, including mark paid, charge the saved card, cancel by
  credit note and refund; corrects a customer's billing identity (country, VAT id); reads
  services and tickets; never suspends, terminates or otherwise changes hosting.
- Administrator: everything.

A staff member in no group can sign in to the admin and do nothing there.
"""

from __future__ import annotations

from typing import Any

SUPPORT_AGENT = "Support agent"
BILLING = "Billing"
ADMINISTRATOR = "Administrator"
ROLES = (SUPPORT_AGENT, BILLING, ADMINISTRATOR)

# app label -> (view-only for these roles, full for these roles)
_APP_ACCESS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "accounts": ((SUPPORT_AGENT, BILLING), (ADMINISTRATOR,)),
    "billing": ((SUPPORT_AGENT,), (BILLING, ADMINISTRATOR)),
    "provisioning": ((SUPPORT_AGENT, BILLING), (ADMINISTRATOR,)),
    "support": ((BILLING,), (SUPPORT_AGENT, ADMINISTRATOR)),
    "api": ((), (ADMINISTRATOR,)),
    # Sign-in records: groups, e-mail addresses, second factors, sessions.
    "auth": ((), (ADMINISTRATOR,)),
    "account": ((), (ADMINISTRATOR,)),
    "mfa": ((), (ADMINISTRATOR,)),
    "usersessions": ((), (ADMINISTRATOR,)),
}

# The permissions staff actions and buttons check, beyond Django's add/change/delete/view:
# "app.codename" -> (model, name). Each admin action names one of these (or a Django one)
# in ``@admin.action(permissions=...)``; tests/accounts/test_role_matrix.py holds the table of
# who may run what.
ACTION_PERMISSIONS: dict[str, tuple[str, str]] = {
    "accounts.impersonate_customer": ("customer", "Can sign in as the customer"),
    "billing.mark_paid_invoice": ("invoice", "Can mark invoices paid (money received)"),
    "billing.charge_invoice": ("invoice", "Can charge invoices to the saved card"),
    "billing.credit_invoice": ("invoice", "Can cancel invoices by credit note"),
    "billing.refund_payment": ("payment", "Can refund payments"),
    "provisioning.suspend_service": ("service", "Can suspend and unsuspend (staff hold)"),
    "provisioning.terminate_service": ("service", "Can terminate services"),
    "provisioning.move_service": ("service", "Can move services to another node"),
    "provisioning.retry_operation": ("operation", "Can retry operations"),
    "provisioning.rollback_operation": ("operation", "Can roll back operations"),
    "provisioning.check_node": ("node", "Can check nodes (health, drift) now"),
    "provisioning.set_status_node": ("node", "Can drain and activate nodes"),
    "provisioning.repin_node": ("node", "Can pin the host key a node presents now"),
    "provisioning.repair_driftfinding": ("driftfinding", "Can repair drift"),
    "api.issue_key_provisioningclient": ("provisioningclient", "Can issue provisioning keys"),
    "api.replay_webhookdelivery": ("webhookdelivery", "Can deliver webhooks again"),
}

# Permissions a role holds in apps where it is not a full editor (editors hold all of their
# apps' permissions, these included).
_ROLE_EXTRA: dict[str, tuple[str, ...]] = {
    SUPPORT_AGENT: (
        "accounts.impersonate_customer",
        "provisioning.suspend_service",
        "provisioning.retry_operation",
        "provisioning.rollback_operation",
        "provisioning.check_node",
        "provisioning.repair_driftfinding",
    ),
    # The customer's billing identity (name, company, country, VAT id through its check).
    BILLING: ("accounts.change_customer",),
    ADMINISTRATOR: (),
}

# Permissions of a role's full apps that it still does not get: a ticket is the record of a
# conversation with a customer, so only administrators delete one (spam, a legal request).
_ROLE_WITHHELD: dict[str, tuple[str, ...]] = {
    SUPPORT_AGENT: ("support.delete_ticket",),
}


def _action_permissions() -> dict[str, Any]:
    """Create the action permissions (idempotent); returns them by "app.codename"."""
    from django.apps import apps
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    found = {}
    for key, (model_name, name) in ACTION_PERMISSIONS.items():
        app_label, codename = key.split(".", 1)
        content_type = ContentType.objects.get_for_model(apps.get_model(app_label, model_name))
        permission, created = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        if not created and permission.name != name:
            permission.name = name
            permission.save(update_fields=["name"])
        found[key] = permission
    return found


def _permission_ids(keys: tuple[str, ...]) -> set[int]:
    from django.contrib.auth.models import Permission

    ids: set[int] = set()
    for key in keys:
        app_label, codename = key.split(".", 1)
        ids.update(
            Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).values_list("pk", flat=True)
        )
    return ids


def sync_roles(sender: Any = None, **kwargs: Any) -> None:
    """Create the staff groups and give them exactly their permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    _action_permissions()
    wanted: dict[str, set[int]] = {name: set() for name in ROLES}
    for app_label, (viewers, editors) in _APP_ACCESS.items():
        perms = list(Permission.objects.filter(content_type__app_label=app_label))
        for role in viewers:
            wanted[role].update(p.pk for p in perms if p.codename.startswith("view_"))
        for role in editors:
            wanted[role].update(p.pk for p in perms)
    for role, keys in _ROLE_EXTRA.items():
        wanted[role].update(_permission_ids(keys))
    for role, keys in _ROLE_WITHHELD.items():
        wanted[role].difference_update(_permission_ids(keys))
    for name in ROLES:
        group = Group.objects.get_or_create(name=name)[0]
        group.permissions.set(wanted[name])


def staff_may(user: Any, permission: str) -> bool:
    """Does this signed-in staff member hold ``permission`` ("app.codename")?"""
    return bool(
        user is not None
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm(permission)
    )
