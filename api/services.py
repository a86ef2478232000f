"""Writes concerning API credentials."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import audit_record
from api.auth import hash_token_secret
from api.models import ApiNonce, ApiToken, ProvisioningClient, ProvisioningClientKey
from api.signing import TOLERANCE_SECONDS, encrypt_secret, new_secret


@dataclass(frozen=True)
class IssuedSecret:
    """A credential as shown once to its owner; only a hash or ciphertext is stored."""

    id: int
    public: str
    secret: str


@transaction.atomic
def api_token_create(
    *, customer: Customer, user: User, name: str, scope: str = ApiToken.Scope.READ
) -> IssuedSecret:
    """Create a personal token; the returned ``secret`` is the whole token, shown once."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(30).replace("-", "x").replace("_", "y")
    token = ApiToken.objects.create(
        customer=customer,
        user=user,
        name=name.strip() or "API token",
        prefix=prefix,
        secret_hash=hash_token_secret(secret),
        scope=scope,
    )
    audit_record(
        action="api_token.created",
        actor=user,
        target=token,
        customer=customer,
        detail={"scope": scope, "name": token.name},
    )
    return IssuedSecret(id=token.pk, public=prefix, secret=f"hw_{prefix}_{secret}")


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke a token at once; requests with it fail from now on."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(action="api_token.revoked", actor=actor, target=token, customer=token.customer)
    return token


@transaction.atomic
def provisioning_key_issue(
    *,
    client: ProvisioningClient,
    actor: User | None = None,
    retire_others_after: timedelta | None = None,
) -> IssuedSecret:
    """Issue a new HMAC key for a client.

    With ``retire_others_after`` this is a rotation: the client's other keys keep working
    for that long (so the client can switch without downtime) and then expire.
    """
    secret = new_secret()
    key = ProvisioningClientKey.objects.create(
        client=client,
        key_id=f"hwk_{secrets.token_hex(8)}",
        secret_encrypted=encrypt_secret(secret),
    )
    retired: list[str] = []
    if retire_others_after is not None:
        deadline: datetime = timezone.now() + retire_others_after
        others = ProvisioningClientKey.objects.select_for_update().filter(
            client=client, revoked_at__isnull=True
        )
        for other in others.exclude(pk=key.pk):
            if other.expires_at is None or other.expires_at > deadline:
                other.expires_at = deadline
                other.save(update_fields=["expires_at"])
                retired.append(other.key_id)
    audit_record(
        action="provisioning_key.issued",
        actor=actor,
        target=key,
        detail={"client": client.name, "retiring": retired},
    )
    return IssuedSecret(id=key.pk, public=key.key_id, secret=secret)


def api_nonces_purge(*, now: datetime | None = None) -> int:
    """Forget nonces older than twice the signature window (they can't be replayed anyway)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=2 * TOLERANCE_SECONDS)
    deleted, _ = ApiNonce.objects.filter(seen_at__lt=cutoff).delete()
    return deleted
