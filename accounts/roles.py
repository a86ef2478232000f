"""Staff roles as Django groups, with the permissions each role carries.

Roles are kept in code so that every deployment has the same ones; running
migrations brings the groups up to date.
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
    "provisioning": ((BILLING,), (SUPPORT_AGENT, ADMINISTRATOR)),
    "support": ((BILLING,), (SUPPORT_AGENT, ADMINISTRATOR)),
}


def sync_roles(sender: Any = None, **kwargs: Any) -> None:
    """Create the staff groups and give them their permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    for app_label, (viewers, editors) in _APP_ACCESS.items():
        perms = list(Permission.objects.filter(content_type__app_label=app_label))
        view_perms = [p for p in perms if p.codename.startswith("view_")]
        for role in viewers:
            groups[role].permissions.add(*view_perms)
        for role in editors:
            groups[role].permissions.add(*perms)
