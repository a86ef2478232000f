"""Staff must have two-factor authentication before they reach the admin."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse


def user_has_totp(user: object) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class StaffMFAMiddleware:
    """Send staff without TOTP to set it up before any admin page.

    The admin login itself goes through allauth (see ``accounts.admin_site``),
    so a staff member who has TOTP is asked for a code at login.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        admin_prefix = reverse("admin:index")
        user = getattr(request, "user", None)
        if (
            request.path.startswith(admin_prefix)
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and not user_has_totp(user)
        ):
            messages.warning(
                request,
                "Staff accounts need two-factor authentication. "
                "Set up an authenticator app to continue to the admin.",
            )
            return HttpResponseRedirect(reverse("mfa_activate_totp"))
        return self.get_response(request)
