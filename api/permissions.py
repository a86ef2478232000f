from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from api.models import ApiToken, ProvisioningClientKey


class IsProvisioningClient(BasePermission):
    message = "This endpoint is for signed provisioning clients."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ProvisioningClientKey)


class IsCustomer(BasePermission):
    """A signed-in customer (session) or a personal token; write needs a write token."""

    message = "This token may only read."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, ApiToken):
            return request.method in SAFE_METHODS or request.auth.scope == ApiToken.Scope.WRITE
        return request.auth is None  # a browser session
