"""Staff pages need a session that passed the second factor.

A staff member reaches the admin, ``/metrics`` (by session) and impersonation only when
they have TOTP set up *and* this session proved it: signed in with a code, confirmed a code
since (allauth's reauthentication), or set TOTP up in this session by typing a code. Having
TOTP on the account is not enough: a session opened some other way (or before TOTP was set
up) is asked for a code first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

# The user id whose second factor this session has seen (set from allauth's signals).
SESSION_KEY = "hw_second_factor"


def user_has_totp(user: object) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def session_mark_second_factor(request: HttpRequest, user: Any) -> None:
    """Remember that this session's user just gave a valid second factor."""
    request.session[SESSION_KEY] = str(user.pk)


def session_passed_second_factor(request: HttpRequest) -> bool:
    """Did the user signed in on this session give a second factor in it?"""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    if request.session.get(SESSION_KEY) == str(user.pk):
        return True
    return any(r.get("method") == "mfa" for r in get_authentication_records(request, user))


def staff_session_verified(request: HttpRequest) -> bool:
    """A signed-in, active staff member with TOTP whose session passed the second factor."""
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user_has_totp(user)
        and session_passed_second_factor(request)
    )


def second_factor_url(request: HttpRequest) -> str:
    """Where a staff member goes to get a verified session: set TOTP up, or give a code."""
    if not user_has_totp(request.user):
        return reverse("mfa_activate_totp")
    return f"{reverse('mfa_reauthenticate')}?{urlencode({'next': request.get_full_path()})}"


def _on_used(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """allauth: a code (TOTP or a recovery code) was given, at sign-in or to reauthenticate."""
    user = kwargs.get("user")
    if request is not None and user is not None and hasattr(request, "session"):
        session_mark_second_factor(request, user)


def _on_added(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """allauth: TOTP was set up in this session, which takes a valid code."""
    authenticator = kwargs.get("authenticator")
    if authenticator is not None and authenticator.type == Authenticator.Type.TOTP:
        _on_used(sender, request=request, **kwargs)


def connect_signals() -> None:
    from allauth.mfa import signals

    signals.authenticator_used.connect(_on_used, dispatch_uid="accounts.second_factor_used")
    signals.authenticator_added.connect(_on_added, dispatch_uid="accounts.second_factor_added")


class StaffMFAMiddleware:
    """Send staff to their second factor before any admin page.

    Staff without TOTP are sent to set it up; staff with TOTP whose session has not given a
    code are asked for one (and come back to the page they wanted). The admin login itself
    goes through allauth (see ``accounts.admin_site``), which asks for the code at login.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        admin_prefix = reverse("admin:index")
        user = getattr(request, "user", None)
        if (
            request.path.startswith(admin_prefix)
            and request.path != reverse("admin:logout")
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and not staff_session_verified(request)
        ):
            if user_has_totp(user):
                messages.info(request, "Confirm it is you with a code from your authenticator.")
            else:
                messages.warning(
                    request,
                    "Staff accounts need two-factor authentication. "
                    "Set up an authenticator app to continue to the admin.",
                )
            return HttpResponseRedirect(second_factor_url(request))
        return self.get_response(request)
