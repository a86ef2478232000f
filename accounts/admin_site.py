from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib.admin import AdminSite


def brand_admin_site(site: AdminSite) -> None:
    """Brand the admin and send its login through allauth (throttling, MFA)."""
    site.site_header = f"{settings.HOSTING_BRAND} admin"
    site.site_title = f"{settings.HOSTING_BRAND} admin"
    site.index_title = "Back office"
    site.login = secure_admin_login(site.login)  # type: ignore[method-assign]
