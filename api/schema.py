"""OpenAPI descriptions of the two authentication schemes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.TokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal token from the panel (Account → API tokens): hw_…",
        }


class HMACScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.HMACAuthentication"
    name = "hmacSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Hostwright-Signature",
            "description": (
                "HMAC-SHA256, hex, over METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\n"
                "SHA256-HEX(BODY), sent as `v1=<hex>` together with X-Hostwright-Key, "
                "X-Hostwright-Timestamp (Unix seconds, within 300 s) and X-Hostwright-Nonce "
                "(16-64 of A-Z a-z 0-9 - _, each accepted once)."
            ),
        }
