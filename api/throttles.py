from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from api.models import ApiToken, ProvisioningClientKey


class TokenRateThrottle(SimpleRateThrottle):
    """Per personal token (or per user for browser sessions)."""

    scope = "customer"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ClientRateThrottle(SimpleRateThrottle):
    """Per provisioning client (all its keys together)."""

    scope = "provisioning_client"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ProvisioningClientKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.client_id}
        return None
