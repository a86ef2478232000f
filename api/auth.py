"""Authentication for the two kinds of API callers.

* Customers' scripts: ``Authorization: Bearer hw_<prefix>_<secret>`` (personal tokens).
* Provisioning clients: HMAC-signed requests (see ``api.signing``), a 300 s window, and every
  nonce accepted once per client.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import Membership
from api.models import ApiNonce, ApiToken, ProvisioningClientKey
from api.signing import TOLERANCE_SECONDS, decrypt_secret, sign_request, signature_matches

TOKEN_RE = re.compile(r"hw_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{20,64})")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class AuthFailed(exceptions.AuthenticationFailed):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, code)


def hash_token_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenAuthentication(authentication.BaseAuthentication):
    """A customer's personal API token."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme != self.keyword:
            return None
        match = TOKEN_RE.fullmatch(value.strip())
        if not match:
            raise AuthFailed("The token is malformed.", "token_invalid")
        prefix, secret = match.groups()
        token = ApiToken.objects.select_related("user", "customer").filter(prefix=prefix).first()
        if token is None or not hmac.compare_digest(token.secret_hash, hash_token_secret(secret)):
            raise AuthFailed("The token is not valid.", "token_invalid")
        if not token.is_active:
            raise AuthFailed("The token was revoked.", "token_revoked")
        if not token.user.is_active:
            raise AuthFailed("The token's user is disabled.", "token_invalid")
        # A token acts for its user as a member of its customer: when the membership ends
        # (a teammate removed), every token that user made for that customer stops working.
        if not Membership.objects.filter(
            customer_id=token.customer_id, user_id=token.user_id
        ).exists():
            raise AuthFailed(
                "The token's user is no longer a member of this customer.", "token_invalid"
            )
        now = timezone.now()
        # Writing on every request would make reads write; a minute's precision is enough.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def nonce_spend(*, client_id: int, nonce: str) -> bool:
    """Record a client's nonce; False when it was used before (a replay).

    One statement that never raises on a replay (``ON CONFLICT DO NOTHING``), so it needs no
    savepoint inside the caller's transaction and aborts nothing there.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ApiNonce._meta.db_table} (client_id, nonce, seen_at) "  # noqa: S608
            "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [client_id, nonce, timezone.now()],
        )
        return cursor.rowcount == 1


class HMACAuthentication(authentication.BaseAuthentication):
    """A provisioning client's signed request."""

    def authenticate(self, request: Request) -> tuple[Any, ProvisioningClientKey] | None:
        meta = request.META
        key_id = meta.get("HTTP_X_HOSTWRIGHT_KEY", "")
        if not key_id:
            return None
        timestamp = meta.get("HTTP_X_HOSTWRIGHT_TIMESTAMP", "")
        nonce = meta.get("HTTP_X_HOSTWRIGHT_NONCE", "")
        signature = meta.get("HTTP_X_HOSTWRIGHT_SIGNATURE", "")
        if not (timestamp and nonce and signature):
            raise AuthFailed(
                "Signed requests need X-Hostwright-Key, -Timestamp, -Nonce and -Signature.",
                "signature_missing",
            )
        key = ProvisioningClientKey.objects.select_related("client").filter(key_id=key_id).first()
        if key is None or not key.usable_at(timezone.now()):
            raise AuthFailed("The key is unknown, expired or revoked.", "key_invalid")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            raise AuthFailed(
                f"The timestamp is outside the {TOLERANCE_SECONDS} s window; check the clock.",
                "timestamp_stale",
            )
        if not NONCE_RE.fullmatch(nonce):
            raise AuthFailed("The nonce must be 16 to 64 letters, digits, - or _.", "nonce_invalid")
        secret = decrypt_secret(key.secret_encrypted)
        django_request = request._request
        expected = sign_request(
            secret,
            method=django_request.method or "",
            path=django_request.get_full_path(),
            timestamp=timestamp,
            nonce=nonce,
            body=django_request.body,
        )
        if not secret or not signature_matches(expected, signature):
            raise AuthFailed("The signature does not match the request.", "signature_invalid")
        # Only a correctly signed request may use up a nonce.
        if not nonce_spend(client_id=key.client_id, nonce=nonce):
            raise AuthFailed("This nonce was already used.", "nonce_replayed")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            ProvisioningClientKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return 'HMAC-SHA256 realm="provisioning"'
