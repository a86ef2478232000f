"""HMAC signing shared by the provisioning API (incoming) and webhooks (outgoing).

Incoming requests sign this canonical text with the client key's secret, HMAC-SHA256, hex::

    METHOD \\n PATH[?QUERY] \\n TIMESTAMP \\n NONCE \\n SHA256-HEX(BODY)

and send it as ``X-Hostwright-Signature: v1=<hex>`` with ``X-Hostwright-Key``,
``X-Hostwright-Timestamp`` (Unix seconds) and ``X-Hostwright-Nonce``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS = 300


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path, timestamp, nonce, digest]).encode()


def sign_request(
    secret: str, *, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The value of ``X-Hostwright-Signature`` for a request."""
    mac = hmac.new(
        secret.encode(), canonical_request(method, path, timestamp, nonce, body), hashlib.sha256
    )
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def sign_webhook(secret: str, *, timestamp: int, body: bytes) -> str:
    """``X-Hostwright-Webhook-Signature`` for an outgoing delivery: ``t=<ts>,v1=<hex>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},{SIGNATURE_VERSION}={mac.hexdigest()}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _fernet() -> Fernet:
    key = hashlib.sha256(b"hostwright-api-secrets:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        # SECRET_KEY changed since the key was issued: the key must be reissued.
        return ""
