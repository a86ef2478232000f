"""Staff signing in as a customer to see what they see, audited both ways.

The staff member's own id is kept in the impersonated session so the banner can name them
and "end" can sign them back in; both ends write an audit row on the customer, which the
customer sees on their account activity page.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import reverse

from accounts.middleware import session_mark_second_factor, staff_session_verified
from accounts.models import Customer, Membership, User
from accounts.roles import staff_may
from accounts.services import audit_record

SESSION_KEY = "hw_impersonator"
BACKEND = "django.contrib.auth.backends.ModelBackend"


class ImpersonationRefused(Exception):
    pass


def may_impersonate(user: User) -> bool:
    """Staff whose role grants it (administrators and support agents; not billing)."""
    return staff_may(user, "accounts.impersonate_customer")


def impersonation_target(*, customer: Customer) -> User:
    """The customer's owner, the user whose view staff get; staff users are never a target."""
    membership = (
        Membership.objects.filter(customer=customer, role=Membership.Role.OWNER)
        .select_related("user")
        .order_by("id")
        .first()
    )
    if membership is None:
        raise ImpersonationRefused("This customer has no owner to sign in as.")
    user = membership.user
    if user.is_staff or user.is_superuser or not user.is_active:
        raise ImpersonationRefused("Staff and inactive users cannot be impersonated.")
    return user


def impersonation_start(*, request: HttpRequest, staff: User, customer: Customer) -> User:
    """Sign the request in as the customer's owner and remember who really is there."""
    if not may_impersonate(staff):
        raise ImpersonationRefused("Your role does not allow signing in as a customer.")
    if request.user != staff or not staff_session_verified(request):
        raise ImpersonationRefused(
            "Confirm it is you with your second factor before signing in as a customer."
        )
    target = impersonation_target(customer=customer)
    with transaction.atomic():
        audit_record(
            action="panel.impersonation.started",
            actor=staff,
            target=customer,
            customer=customer,
            detail={"as": target.email, "staff": staff.get_full_name()},
        )
    login(request, target, backend=BACKEND)
    request.session[SESSION_KEY] = {
        "id": staff.pk,
        "email": staff.email,
        "customer": customer.pk,
        # Signing in as the customer starts a new session; the staff member's proof of
        # their second factor is carried along so that "end" can hand it back.
        "second_factor": True,
    }
    return target


def impersonation_end(*, request: HttpRequest) -> User | None:
    """Sign the staff member back in; None when the session was not an impersonation."""
    data = request.session.get(SESSION_KEY)
    if not data:
        return None
    staff = User.objects.filter(pk=data.get("id"), is_staff=True, is_active=True).first()
    customer = Customer.objects.filter(pk=data.get("customer")).first()
    with transaction.atomic():
        audit_record(
            action="panel.impersonation.ended",
            actor=staff,
            actor_label=data.get("email", ""),
            target=customer,
            customer=customer,
        )
    request.session.pop(SESSION_KEY, None)
    if staff is None:
        from django.contrib.auth import logout

        logout(request)
        return None
    login(request, staff, backend=BACKEND)
    if data.get("second_factor"):
        session_mark_second_factor(request, staff)
    return staff


# While staff act as a customer they may look everywhere but not change how the customer
# signs in: password, e-mail addresses, two-factor, sessions and API tokens stay theirs.
GUARDED_PREFIXES = ("/accounts/", "/account/tokens/")


class ImpersonationGuardMiddleware:
    """Refuse changes to the customer's credentials during an impersonation."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if (
            request.method not in ("GET", "HEAD", "OPTIONS")
            and session is not None
            and session.get(SESSION_KEY)
            and request.path.startswith(GUARDED_PREFIXES)
            and request.path != reverse("account_logout")
        ):
            return HttpResponseForbidden(
                "Staff signed in as a customer cannot change the customer's sign-in details."
            )
        return self.get_response(request)
