"""Services for a hosting account's resources: each validates, then starts an operation.

Every value is validated here, before any operation exists or anything reaches a node; bad
input raises ``ProvisioningRefused`` with a message for the customer. Passwords are hashed
here and only the hash is stored in the operation's params and sent to the node; the caller
shows the password to the customer once and keeps it nowhere.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import User
from provisioning import services as engine
from provisioning.errors import ProvisioningRefused
from provisioning.models import Operation, Service, StepRun
from provisioning.resources import acme as hwacme
from provisioning.resources import backups, sftp
from provisioning.resources import databases as hwdb
from provisioning.resources import dns as hwdns
from provisioning.resources import mail as hwmail
from provisioning.resources import wordpress as wp
from provisioning.validators import (
    validate_email,
    validate_forward_targets,
    validate_local_part,
    validate_quota,
)


def _start(*, service: Service, kind: str, params: dict[str, Any], actor: User | None) -> Operation:
    return engine.operation_start(service=service, kind=kind, params=params, actor=actor)


def _own_address(service: Service, address: str) -> str:
    address = validate_email(address)
    if address.split("@")[1] != service.domain:
        raise ProvisioningRefused(f"{address} is not an address of {service.domain}.", code="mail")
    return address


@transaction.atomic
def dns_records_change(
    *,
    service: Service,
    replace: list[dict[str, Any]] = [],  # noqa: B006 (never mutated)
    delete: list[tuple[str, str]] = [],  # noqa: B006
    actor: User | None = None,
) -> Operation:
    """Replace RRsets (``{"name", "type", "contents", "ttl"}``) and delete (name, type) pairs
    in the account's zone. Record data is checked with dnspython here, before any SSH."""
    rrsets = [
        hwdns.make_rrset(
            zone=service.domain,
            name=str(r["name"]),
            rtype=str(r["type"]),
            contents=[str(c) for c in r["contents"]],
            ttl=int(r.get("ttl", hwdns.DEFAULT_TTL)),
        )
        for r in replace
    ]
    deletions = [list(hwdns.deletion(zone=service.domain, name=n, rtype=t)) for n, t in delete]
    hwdns.check_rrsets(rrsets)
    params = {
        "replace": [
            {"name": r.name, "type": r.rtype, "ttl": r.ttl, "contents": list(r.contents)}
            for r in rrsets
        ],
        "delete": deletions,
    }
    return _start(service=service, kind="dns_records", params=params, actor=actor)


@transaction.atomic
def database_create(
    *, service: Service, name: str, user: str, password: str, actor: User | None = None
) -> Operation:
    """A database ``<account>_<name>`` and a user ``<account>_<user>`` granted on it."""
    params = {
        "name": hwdb.validate_db_name(name, account=service.username),
        "user": hwdb.validate_db_name(user, account=service.username),
        "password_hash": hwdb.native_password_hash(password),
    }
    return _start(service=service, kind="database_create", params=params, actor=actor)


@transaction.atomic
def database_delete(
    *, service: Service, name: str, user: str | None = None, actor: User | None = None
) -> Operation:
    params = {
        "name": hwdb.validate_db_name(name, account=service.username),
        "user": hwdb.validate_db_name(user, account=service.username) if user else "",
    }
    return _start(service=service, kind="database_delete", params=params, actor=actor)


@transaction.atomic
def database_password_change(
    *, service: Service, user: str, password: str, actor: User | None = None
) -> Operation:
    params = {
        "user": hwdb.validate_db_name(user, account=service.username),
        "password_hash": hwdb.native_password_hash(password),
    }
    return _start(service=service, kind="database_password", params=params, actor=actor)


@transaction.atomic
def mailbox_create(
    *,
    service: Service,
    local_part: str,
    password: str,
    quota_mb: int = 1024,
    actor: User | None = None,
) -> Operation:
    """A mailbox ``<local_part>@<the account's domain>`` with a password and a quota."""
    address = f"{validate_local_part(local_part)}@{service.domain}"
    validate_quota(quota_mb)
    password_hash = hwmail.hash_password(password)
    params = {"address": address, "password_hash": password_hash, "quota_mb": quota_mb}
    return _start(service=service, kind="mailbox_create", params=params, actor=actor)


@transaction.atomic
def mailbox_delete(*, service: Service, address: str, actor: User | None = None) -> Operation:
    params = {"address": _own_address(service, address)}
    return _start(service=service, kind="mailbox_delete", params=params, actor=actor)


@transaction.atomic
def mailbox_password_change(
    *, service: Service, address: str, password: str, actor: User | None = None
) -> Operation:
    params = {
        "address": _own_address(service, address),
        "password_hash": hwmail.hash_password(password),
    }
    return _start(service=service, kind="mailbox_password", params=params, actor=actor)


@transaction.atomic
def forwarder_set(
    *, service: Service, source: str, targets: list[str], actor: User | None = None
) -> Operation:
    src = _own_address(service, source)
    params = {"source": src, "targets": validate_forward_targets(targets)}
    return _start(service=service, kind="forwarder_set", params=params, actor=actor)


@transaction.atomic
def forwarder_delete(*, service: Service, source: str, actor: User | None = None) -> Operation:
    params = {"source": _own_address(service, source)}
    return _start(service=service, kind="forwarder_delete", params=params, actor=actor)


@transaction.atomic
def mailbox_quota_change(
    *, service: Service, address: str, quota_mb: int, actor: User | None = None
) -> Operation:
    address = _own_address(service, address)
    validate_quota(quota_mb)
    params = {"address": address, "quota_mb": quota_mb}
    return _start(service=service, kind="mailbox_quota", params=params, actor=actor)


@transaction.atomic
def catchall_set(*, service: Service, target: str | None, actor: User | None = None) -> Operation:
    """Send mail for unknown addresses of the domain to ``target`` (``None``: refuse it)."""
    params = {"target": validate_email(target) if target else ""}
    return _start(service=service, kind="mail_catchall", params=params, actor=actor)


@transaction.atomic
def autoreply_set(
    *,
    service: Service,
    address: str,
    subject: str = "",
    body: str = "",
    days: int = 1,
    enabled: bool = True,
    actor: User | None = None,
) -> Operation:
    """Turn a mailbox's auto-reply on with this text, or off (``enabled=False``)."""
    address = _own_address(service, address)
    if enabled:
        hwmail.autoreply_script_text(subject=subject, body=body, days=days)  # same checks
    params: dict[str, Any] = {"address": address, "enabled": enabled}
    if enabled:
        params |= {"subject": subject.strip(), "body": body.replace("\r\n", "\n").strip()}
        params["days"] = days
    return _start(service=service, kind="mail_autoreply", params=params, actor=actor)


@transaction.atomic
def dkim_rotate(*, service: Service, actor: User | None = None) -> Operation:
    """A new DKIM key: published in the zone first, then signed with; the old one retires."""
    return _start(service=service, kind="dkim_rotate", params={}, actor=actor)


@transaction.atomic
def dmarc_set(*, service: Service, policy: str, actor: User | None = None) -> Operation:
    """The domain's DMARC policy (none, quarantine, reject), reports to its postmaster."""
    text = hwmail.dmarc_text(domain=service.domain, policy=policy)
    return dns_records_change(
        service=service,
        replace=[{"name": "_dmarc", "type": "TXT", "contents": [text], "ttl": 3600}],
        actor=actor,
    )


@transaction.atomic
def certificate_issue(
    *,
    service: Service,
    directory_url: str | None = None,
    ca_bundle: str | None = None,
    actor: User | None = None,
) -> Operation:
    """Issue (or renew) the certificate for the account's domain and www, then serve HTTPS.

    The CA defaults to ``settings.ACME_DIRECTORY_URL`` (Let's Encrypt in production, the local
    node's Pebble elsewhere); ``ca_bundle`` is the CA listener's certificate when it is not
    publicly trusted (Pebble).
    """
    params = {
        "directory_url": directory_url or settings.ACME_DIRECTORY_URL,
        "ca_bundle": ca_bundle if ca_bundle is not None else settings.ACME_CA_BUNDLE,
        "email": settings.ACME_EMAIL,
    }
    return _start(service=service, kind="certificate_issue", params=params, actor=actor)


def certificate_renewal_plan(
    *, now: dt.datetime, policy: hwacme.RenewalPolicy | None = None
) -> list[int]:
    """Ids of active services whose certificate should be renewed now.

    What the panel knows comes from the operations themselves: the expiry recorded by the
    last successful ``certificate`` step, the failed ``certificate_issue`` operations since
    (for the backoff), and the ACME orders of the last window (for the budget).
    """
    policy = policy or hwacme.RenewalPolicy()
    runs = StepRun.objects.filter(step="certificate", direction="apply")
    policy.recent_orders = list(
        runs.filter(started_at__gte=now - policy.window).values_list("started_at", flat=True)
    )
    states = []
    services_with_certs = Service.objects.filter(
        state=Service.State.ACTIVE, operations__kind="certificate_issue"
    ).distinct()
    for service in services_with_certs:
        last_ok = (
            runs.filter(operation__service=service, status=StepRun.Status.SUCCEEDED)
            .order_by("-id")
            .first()
        )
        not_after = None
        if last_ok is not None and last_ok.resources.get("not_after"):
            not_after = dt.datetime.fromisoformat(last_ok.resources["not_after"])
        attempts = service.operations.filter(kind="certificate_issue")
        if last_ok is not None:
            attempts = attempts.filter(created_at__gt=last_ok.operation.created_at)
        failed = attempts.filter(state__in=[Operation.State.FAILED, Operation.State.ROLLED_BACK])
        latest = attempts.order_by("-created_at").first()
        states.append(
            hwacme.CertificateState(
                key=str(service.pk),
                not_after=not_after,
                failures=failed.count(),
                last_attempt=latest.created_at if latest is not None else None,
            )
        )
    return [int(k) for k in policy.plan(states, now)]


def certificates_renew(*, now: dt.datetime) -> list[Operation]:
    """Start ``certificate_issue`` for every certificate the renewal plan picks (cron/beat).

    A service that is busy with another operation is skipped; the next run picks it up.
    """
    started = []
    for service_id in certificate_renewal_plan(now=now):
        service = Service.objects.get(pk=service_id)
        try:
            started.append(certificate_issue(service=service))
        except ProvisioningRefused:
            continue
    return started


@transaction.atomic
def wordpress_install(
    *,
    service: Service,
    title: str,
    admin_user: str,
    admin_email: str,
    actor: User | None = None,
) -> tuple[Operation, str]:
    """Install WordPress into the account's site. Returns the operation and the admin
    password, which is shown to the customer once: only its WordPress hash is stored."""
    password = wp.new_secret(20)
    checked = wp.validate_install(  # the same checks the node makes, before any SSH
        account=service.username,
        domain=service.domain,
        title=title,
        admin_user=admin_user,
        admin_email=admin_email,
    )
    params = {
        "name": "wp",
        **checked,
        "admin_password_hash": wp.wordpress_password_hash(password),
    }
    operation = _start(service=service, kind="wordpress_install", params=params, actor=actor)
    return operation, password


@transaction.atomic
def backup_create(*, service: Service, keep: int = 7, actor: User | None = None) -> Operation:
    """Back up the account now (files and databases), keeping the newest ``keep`` backups."""
    backup_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    params = {"backup_id": backup_id, "keep": backups.validate_keep(keep)}
    return _start(service=service, kind="backup_create", params=params, actor=actor)


@transaction.atomic
def backup_restore(*, service: Service, backup_id: str, actor: User | None = None) -> Operation:
    """Restore the account's files and databases from one of its backups (verified first)."""
    params = {"backup_id": backups.validate_backup_id(backup_id)}
    return _start(service=service, kind="backup_restore", params=params, actor=actor)


@transaction.atomic
def sftp_enable(
    *,
    service: Service,
    password: str | None = None,
    public_keys: list[str] | None = None,
    actor: User | None = None,
) -> Operation:
    """Allow SFTP for the account's Linux user with a password and/or public keys."""
    if not password and not public_keys:
        raise ProvisioningRefused("Give a password or an SSH key for SFTP.", code="sftp")
    params: dict[str, Any] = {
        "public_keys": [sftp.validate_public_key(k) for k in public_keys or []]
    }
    if password:
        params["password_hash"] = sftp.hash_password(password)
    return _start(service=service, kind="sftp_enable", params=params, actor=actor)


@transaction.atomic
def sftp_disable(*, service: Service, actor: User | None = None) -> Operation:
    return _start(service=service, kind="sftp_disable", params={}, actor=actor)


def backups_schedule(*, now: dt.datetime, keep: int | None = None) -> list[Operation]:
    """Start today's backup of every active account that has none yet (cron/beat; idempotent).

    An account busy with another operation is skipped and picked up by the next run; a
    backup that failed today is not retried until tomorrow, so a broken account cannot keep
    a node busy all day. Retention: each backup keeps the newest ``keep`` (BACKUP_KEEP).
    """
    keep = keep if keep is not None else settings.BACKUP_KEEP
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done_today = Operation.objects.filter(
        kind="backup_create", created_at__gte=day_start
    ).values_list("service_id", flat=True)
    started = []
    due = Service.objects.filter(state=Service.State.ACTIVE).exclude(pk__in=done_today)
    for service in due.order_by("pk"):
        try:
            started.append(backup_create(service=service, keep=keep))
        except ProvisioningRefused:
            continue
    return started
