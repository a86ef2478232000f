"""Node resources as engine steps and operation kinds.

Added to the engine's own kinds:

- ``create`` gains ``dns_zone`` (the domain's zone on the node's PowerDNS, with SPF and
  DMARC), ``mail_domain`` (with the plan's sending limits) and ``dkim_key`` (a key made on the
  node, published in the zone, then signed with) before the site goes live, and
  ``verify_dns`` after it: the nameserver is asked with dnspython and its answers are stored
  on the step run, so "was DNS configured?" has a recorded answer.
- ``terminate`` removes the mail domain (with its mail) and the zone.
- ``change_plan`` sets the new plan's sending limits (``mail_limits``).

Kinds of their own (params hold validated values and password *hashes* only, never a
password; ``provisioning.resources.services`` builds them):

``dns_records``, ``database_create``, ``database_delete``, ``database_password``,
``mailbox_create``, ``mailbox_delete``, ``mailbox_password``, ``mailbox_quota``,
``forwarder_set``, ``forwarder_delete``, ``mail_catchall``, ``mail_autoreply``,
``dkim_rotate``.

The PowerDNS API is called through the node's SSH session with curl on the node: the API
key stays in a root-only file there and never appears in a command line or a record.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import shlex
from typing import Any

from django.conf import settings

from billing.models import Plan
from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import Operation, StepRun
from provisioning.resources import (
    backups,
    certificates,  # noqa: F401  (registers certificate_issue)
    sftp,
)
from provisioning.resources import databases as hwdb
from provisioning.resources import dns as hwdns
from provisioning.resources import mail as hwmail
from provisioning.resources import wordpress as wp
from provisioning.resources.errors import ResourceError, ResourceRefused, check_limit
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import validate_domain, validate_email, validate_ip
from provisioning.ssh import action, cmd
from provisioning.steps import hosting  # noqa: F401  (registers the kinds extended below)
from provisioning.steps.base import KINDS, OperationKind, Step, StepContext, register_kind

PDNS_API = "http://127.0.0.1:8081"
PDNS_HEADER = "/etc/hostwright/pdns-api-header"
PDNS_CONF = "/etc/powerdns/pdns.d/hostwright.conf"


def run_script(ctx: StepContext, script: NodeScript, *, check: bool = True) -> Any:
    """Run a resource's NodeScript in the node's shell; its secrets are masked in records."""
    return ctx.run([cmd("bash", "-c", script.script, secrets=script.secrets)], check=check)


def _raise(exc: ResourceError, *, clean: bool = False) -> None:
    if exc.permanent:
        raise PermanentStepError(exc.message, clean=clean) from exc
    raise TransientStepError(exc.message, clean=clean) from exc


class NodeApiTransport:
    """PowerDNS's HTTP API reached with curl on the node, over the step's SSH session.

    The answer comes back gzipped and base64-encoded so a zone fits in the recorded output.
    """

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        if method not in ("GET", "POST", "PATCH", "DELETE") or not path.startswith("/api/v1/"):
            raise PermanentStepError(f"refusing a DNS API request {method} {path}")
        argv = ["curl", "-sS", "--max-time", "20", "-X", method, "-H", f"@{PDNS_HEADER}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        argv += ["-w", "\\n%{http_code}", PDNS_API + path]
        script = (
            f'out=$({shlex.join(argv)}) || exit 75\nprintf "%s" "$out" | gzip -c | base64 -w0\n'
        )
        result = self.ctx.run([cmd("bash", "-c", script, label=f"DNS API: {method} {path}")])
        try:
            raw = gzip.decompress(base64.b64decode(result.stdout.strip())).decode()
        except (ValueError, OSError):
            raise PermanentStepError(
                f"the DNS API answer to {method} {path} was too large or unreadable"
            ) from None
        text, _, status = raw.rpartition("\n")
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return int(status), payload


def pdns(ctx: StepContext) -> hwdns.PowerDNS:
    return hwdns.PowerDNS(NodeApiTransport(ctx))


def _mail_from(ctx: StepContext) -> list[str]:
    """The addresses the account's mail may leave from (SPF): its own and its node's."""
    found: list[str] = []
    ip = ctx.service.ip
    for candidate in (ip.address if ip is not None else None, ctx.node.address):
        try:
            address = validate_ip(candidate)
        except ResourceRefused:
            continue  # the node is reached by name: its address is not known here
        if address not in found:
            found.append(address)
    return found


def _zone_rrsets(ctx: StepContext) -> list[hwdns.RRset]:
    ip = ctx.service.ip
    address = ip.address if ip is not None else ctx.node.address
    return hwdns.zone_rrsets(
        domain=ctx.service.domain,
        ipv4=address,
        nameservers=list(settings.DNS_NAMESERVERS),
        serial=hwdns.next_serial(0, dt.datetime.now(dt.UTC).date()),
        mail_from=_mail_from(ctx),
    )


class DnsZone(Step):
    """The domain's zone: SOA, NS, A for the apex, www and mail, MX and SPF."""

    name = "dns_zone"

    def apply(self, ctx: StepContext) -> None:
        domain = validate_domain(ctx.service.domain)
        try:
            created = pdns(ctx).create_zone(domain, _zone_rrsets(ctx))
        except ResourceError as exc:
            _raise(exc)
        ctx.resource("dns_zone", domain)
        ctx.resource("dns_zone_created", created)

    def undo(self, ctx: StepContext) -> None:
        try:
            pdns(ctx).delete_zone(validate_domain(ctx.service.domain))
        except ResourceError as exc:
            _raise(exc)


class VerifyDns(Step):
    """Ask the node's nameserver for the zone with dnspython and store what it answered."""

    name = "verify_dns"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        probe = ctx.run([cmd("sed", "-n", "s/^local-port=//p", PDNS_CONF)])
        try:
            port = int(probe.stdout.strip() or 53)
        except ValueError:
            port = 53
        check = hwdns.verify_zone(
            ctx.service.domain, nameserver=ctx.node.address, port=port, expect=_zone_rrsets(ctx)
        )
        ctx.resource("dns_check", check.as_dict())
        if not check.ok:
            raise TransientStepError(
                "the nameserver does not answer the zone as configured: "
                + "; ".join(check.problems[:3])
            )


class MailDomain(Step):
    """Accept mail for the domain on the node (mailboxes are added later)."""

    name = "mail_domain"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent(
            [
                action(
                    "mail.domain.ensure",
                    domain=validate_domain(ctx.service.domain),
                    account=_account(ctx),
                    account_hour=ctx.plan.mail_per_hour,
                    mailbox_hour=ctx.plan.mail_per_hour_mailbox,
                )
            ]
        )
        ctx.resource("mail_domain", ctx.service.domain)

    def undo(self, ctx: StepContext) -> None:
        domain = validate_domain(ctx.service.domain)
        ctx.agent(
            [action("mail.domain.remove", domain=domain, purge=True), action("mail.sni.refresh")]
        )


DKIM_TTL = 3600


def _dkim_selectors(rrsets: list[hwdns.RRset], domain: str) -> list[str]:
    suffix = f"._domainkey.{hwdns.fqdn(domain)}"
    return [r.name[: -len(suffix)] for r in rrsets if r.rtype == "TXT" and r.name.endswith(suffix)]


def _selector_age(selector: str) -> int:
    digits = selector[2:] if selector.startswith("hw") else ""
    return int(digits) if digits.isdigit() else -1


class DkimKey(Step):
    """Make a DKIM key on the node, publish it in the zone, then sign with it.

    The selector is ``hw<operation id>``, so a retried step finds its own key again and a
    rotation always gets a new one. The record of the key signed with until now stays in the
    zone (mail in flight still verifies); older ones are removed.
    """

    name = "dkim_key"

    def apply(self, ctx: StepContext) -> None:
        domain = validate_domain(ctx.service.domain)
        selector = f"hw{ctx.operation.pk}"
        [made] = ctx.agent([action("mail.dkim.key", domain=domain, selector=selector)])
        try:
            name, text = hwmail.dkim_record(
                selector=selector, public_key=str(made.data.get("public_key", ""))
            )
            record = hwdns.make_rrset(
                zone=domain, name=name, rtype="TXT", contents=[text], ttl=DKIM_TTL
            )
            client = pdns(ctx)
            current = client.get_zone(domain)
            if current is None:
                raise PermanentStepError(f"the zone {domain} does not exist on the node")
            older = sorted(
                (s for s in _dkim_selectors(current, domain) if s != selector), key=_selector_age
            )
            stale = [(f"{s}._domainkey.{hwdns.fqdn(domain)}", "TXT") for s in older[:-1]]
            client.change_rrsets(domain, replace=[record], delete=stale)
        except ResourceError as exc:
            _raise(exc)
        ctx.agent([action("mail.dkim.activate", domain=domain, selector=selector)])
        ctx.resource("dkim_selector", selector)


class MailLimits(Step):
    """The plan's hourly sending limits on the node's policy service."""

    name = "mail_limits"

    def _set(self, ctx: StepContext, plan: Plan) -> None:
        ctx.agent(
            [
                action(
                    "mail.limits.set",
                    domain=validate_domain(ctx.service.domain),
                    account=_account(ctx),
                    account_hour=plan.mail_per_hour,
                    mailbox_hour=plan.mail_per_hour_mailbox,
                )
            ]
        )

    def apply(self, ctx: StepContext) -> None:
        self._set(ctx, ctx.plan)

    def undo(self, ctx: StepContext) -> None:
        self._set(ctx, ctx.previous_plan)


class RemoveZone(DnsZone):
    name = "remove_dns_zone"

    def apply(self, ctx: StepContext) -> None:
        DnsZone.undo(self, ctx)

    def undo(self, ctx: StepContext) -> None:
        """Termination is not compensated: the account's files are gone too."""


class RemoveMailDomain(MailDomain):
    name = "remove_mail_domain"

    def apply(self, ctx: StepContext) -> None:
        MailDomain.undo(self, ctx)

    def undo(self, ctx: StepContext) -> None:
        """Termination is not compensated."""


# --- customer resources -------------------------------------------------------------------


def _account(ctx: StepContext) -> str:
    return str(ctx.service.username)


class DnsRecords(Step):
    """Replace or delete RRsets in the domain's zone (one atomic change, new serial)."""

    name = "dns_records"

    def _rrsets(self, items: list[dict[str, Any]]) -> list[hwdns.RRset]:
        return [
            hwdns.RRset(
                name=r["name"], rtype=r["type"], ttl=int(r["ttl"]), contents=tuple(r["contents"])
            )
            for r in items
        ]

    def apply(self, ctx: StepContext) -> None:
        client = pdns(ctx)
        domain = validate_domain(ctx.service.domain)
        before = client.get_zone(domain)
        if before is None:
            raise PermanentStepError(f"the zone {domain} does not exist on the node", clean=True)
        # Kept so that undo can put back exactly what was there.
        touched = {(r["name"], r["type"]) for r in ctx.params.get("replace", [])}
        touched |= {(n, t) for n, t in ctx.params.get("delete", [])}
        ctx.resource(
            "previous",
            [
                {"name": r.name, "type": r.rtype, "ttl": r.ttl, "contents": list(r.contents)}
                for r in before
                if (r.name, r.rtype) in touched
            ],
        )
        try:
            serial = client.change_rrsets(
                domain,
                replace=self._rrsets(ctx.params.get("replace", [])),
                delete=[tuple(x) for x in ctx.params.get("delete", [])],
            )
        except ResourceError as exc:
            _raise(exc, clean=True)
        ctx.resource("serial", serial)

    def undo(self, ctx: StepContext) -> None:
        applied = (
            StepRun.objects.filter(operation=ctx.operation, step=self.name, direction="apply")
            .order_by("-id")
            .first()
        )
        previous = applied.resources.get("previous") if applied is not None else None
        if previous is None:
            return  # the change was never sent
        touched = {(r["name"], r["type"]) for r in ctx.params.get("replace", [])}
        touched |= {(n, t) for n, t in ctx.params.get("delete", [])}
        restore = self._rrsets(previous)
        gone = touched - {(r.name, r.rtype) for r in restore}
        try:
            pdns(ctx).change_rrsets(
                validate_domain(ctx.service.domain), replace=restore, delete=sorted(gone)
            )
        except ResourceError as exc:
            _raise(exc)


class DatabaseLimit(Step):
    """Refuse a database over the plan's limit, counting what is really on the node."""

    name = "database_limit"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        account = _account(ctx)
        wanted = hwdb.validate_db_name(account=account, name=ctx.params["name"])
        result = run_script(ctx, hwdb.account_databases_query_script(account=account))
        existing = [line for line in result.stdout.split() if line != wanted]
        try:
            check_limit(what="databases", used=len(existing), allowed=ctx.plan.databases)
        except ResourceError as exc:
            _raise(exc, clean=True)


class Database(Step):
    name = "customer_database"

    def apply(self, ctx: StepContext) -> None:
        run_script(ctx, hwdb.database_create_script(account=_account(ctx), name=ctx.params["name"]))
        ctx.resource(
            "database", hwdb.validate_db_name(account=_account(ctx), name=ctx.params["name"])
        )

    def undo(self, ctx: StepContext) -> None:
        run_script(ctx, hwdb.database_delete_script(account=_account(ctx), name=ctx.params["name"]))


class DatabaseUser(Step):
    name = "customer_database_user"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        run_script(
            ctx,
            hwdb.db_user_create_script(
                account=_account(ctx),
                user=p["user"],
                password_hash=p["password_hash"],
                databases=[p["name"]],
            ),
        )
        ctx.resource("database_user", hwdb.validate_db_name(account=_account(ctx), name=p["user"]))

    def undo(self, ctx: StepContext) -> None:
        run_script(ctx, hwdb.db_user_delete_script(account=_account(ctx), user=ctx.params["user"]))


class DropDatabase(Step):
    """Drop the database and its user (not compensated: the data is gone)."""

    name = "drop_customer_database"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        run_script(ctx, hwdb.database_delete_script(account=_account(ctx), name=p["name"]))
        if p.get("user"):
            run_script(ctx, hwdb.db_user_delete_script(account=_account(ctx), user=p["user"]))


class DatabasePassword(Step):
    name = "customer_database_password"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        run_script(
            ctx,
            hwdb.db_user_password_script(
                account=_account(ctx), user=p["user"], password_hash=p["password_hash"]
            ),
        )


class MailboxLimit(Step):
    """Refuse a mailbox over the plan's limit, counting the domain's mailboxes on the node."""

    name = "mailbox_limit"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        domain = validate_domain(ctx.service.domain)
        address = validate_email(ctx.params["address"])
        [listed] = ctx.agent([action("mail.mailbox.list", domain=domain)])
        existing = [a for a in listed.data.get("mailboxes", []) if a != address]
        try:
            check_limit(what="mailboxes", used=len(existing), allowed=ctx.plan.mailboxes)
        except ResourceError as exc:
            _raise(exc, clean=True)


class Mailbox(Step):
    name = "mailbox"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        ctx.agent(
            [
                action(
                    "mail.mailbox.ensure",
                    secret=("password_hash",),
                    address=validate_email(p["address"]),
                    password_hash=p["password_hash"],
                    quota_mb=int(p["quota_mb"]),
                )
            ]
        )
        ctx.resource("mailbox", p["address"])

    def undo(self, ctx: StepContext) -> None:
        ctx.agent([action("mail.mailbox.remove", address=validate_email(ctx.params["address"]))])


class DeleteMailbox(Step):
    name = "delete_mailbox"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([action("mail.mailbox.remove", address=validate_email(ctx.params["address"]))])


class MailboxPassword(Step):
    name = "mailbox_password"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        ctx.agent(
            [
                action(
                    "mail.mailbox.password",
                    secret=("password_hash",),
                    address=validate_email(p["address"]),
                    password_hash=p["password_hash"],
                )
            ]
        )


class Forwarder(Step):
    name = "forwarder"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        ctx.agent(
            [
                action(
                    "mail.forwarder.set",
                    source=validate_email(p["source"]),
                    targets=[validate_email(t) for t in p["targets"]],
                )
            ]
        )

    def undo(self, ctx: StepContext) -> None:
        ctx.agent([action("mail.forwarder.remove", source=validate_email(ctx.params["source"]))])


class DeleteForwarder(Step):
    name = "delete_forwarder"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([action("mail.forwarder.remove", source=validate_email(ctx.params["source"]))])


class MailboxQuota(Step):
    name = "mailbox_quota"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        ctx.agent(
            [
                action(
                    "mail.mailbox.quota",
                    address=validate_email(p["address"]),
                    quota_mb=int(p["quota_mb"]),
                )
            ]
        )


class CatchAll(Step):
    """Set (``target``) or remove (empty ``target``) the domain's catch-all address."""

    name = "mail_catchall"

    def apply(self, ctx: StepContext) -> None:
        target = ctx.params.get("target") or ""
        ctx.agent(
            [
                action(
                    "mail.catchall.set",
                    domain=validate_domain(ctx.service.domain),
                    target=validate_email(target) if target else "",
                )
            ]
        )


class AutoReply(Step):
    """Turn a mailbox's auto-reply on (with its text) or off."""

    name = "mail_autoreply"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        address = validate_email(p["address"])
        if p.get("enabled"):
            hwmail.autoreply_script_text(subject=p["subject"], body=p["body"], days=int(p["days"]))
            act = action(
                "mail.autoreply.set",
                address=address,
                subject=p["subject"],
                body=p["body"],
                days=int(p["days"]),
            )
        else:
            act = action("mail.autoreply.set", address=address, enabled=False)
        ctx.agent([act])


class WordPress(Step):
    """WordPress from the node's package in the account's docroot, with its own database."""

    name = "wordpress"

    def docroot(self, ctx: StepContext) -> str:
        return f"/home/{_account(ctx)}/public_html"

    def apply(self, ctx: StepContext) -> None:
        account, p = _account(ctx), ctx.params
        docroot = self.docroot(ctx)
        installed = ctx.run([cmd("test", "-e", f"{docroot}/wp-config.php")], check=False).ok
        db_password = wp.new_secret()
        scripts = []
        if not installed:
            existing = run_script(ctx, hwdb.account_databases_query_script(account=account))
            if hwdb.validate_db_name(account=account, name="wp") in existing.stdout.split():
                raise PermanentStepError(
                    f"The database {account}_wp already exists: delete it or rename it first.",
                    clean=True,
                )
            scripts += [
                hwdb.database_create_script(account=account, name="wp"),
                hwdb.db_user_create_script(
                    account=account,
                    user="wp",
                    password_hash=hwdb.native_password_hash(db_password),
                    databases=["wp"],
                ),
            ]
        scripts.append(
            wp.wordpress_install_script(
                account=account,
                domain=ctx.service.domain,
                docroot=docroot,
                db_name="wp",
                db_user="wp",
                db_password=db_password,
                title=p["title"],
                admin_user=p["admin_user"],
                admin_email=p["admin_email"],
                admin_password_hash=p["admin_password_hash"],
            )
        )
        ctx.run([cmd("bash", "-c", s.script, secrets=s.secrets) for s in scripts])
        ctx.resource("wordpress", docroot)
        ctx.resource("database", f"{account}_wp")

    def undo(self, ctx: StepContext) -> None:
        account = _account(ctx)
        ctx.run(
            [
                cmd("bash", "-c", s.script)
                for s in (
                    wp.wordpress_remove_script(docroot=self.docroot(ctx)),
                    hwdb.db_user_delete_script(account=account, user="wp"),
                    hwdb.database_delete_script(account=account, name="wp"),
                )
            ]
        )


class Backup(Step):
    """Back up the account's files and every database, verify it, prune old backups."""

    name = "backup"

    def apply(self, ctx: StepContext) -> None:
        account, p = _account(ctx), ctx.params
        listing = run_script(ctx, hwdb.account_databases_query_script(account=account))
        names = [d[len(account) + 1 :] for d in listing.stdout.split()]
        result = run_script(
            ctx,
            backups.backup_create_script(
                account=account, backup_id=p["backup_id"], databases=names
            ),
            check=False,
        )
        report = backups.parse_report(result.stdout)
        ctx.resource("report", [r.__dict__ for r in report])
        if not result.ok:
            failed = [f"{r.component}: {r.error}" for r in report if not r.ok]
            raise PermanentStepError(
                "The backup failed: " + ("; ".join(failed) or result.stderr.strip()[-300:])
            )
        run_script(ctx, backups.backup_verify_script(account=account, backup_id=p["backup_id"]))
        ctx.resource("verified", True)
        if p.get("keep"):
            run_script(ctx, backups.backup_prune_script(account=account, keep=int(p["keep"])))

    def undo(self, ctx: StepContext) -> None:
        path = backups.backup_dir(_account(ctx), ctx.params["backup_id"])
        ctx.run([cmd("rm", "-rf", "--", path)])


class Restore(Step):
    """Restore files and databases from a verified backup (not compensated)."""

    name = "restore"

    def apply(self, ctx: StepContext) -> None:
        run_script(
            ctx,
            backups.backup_restore_script(account=_account(ctx), backup_id=ctx.params["backup_id"]),
        )


class Sftp(Step):
    """Let the account's Linux user in over chrooted SFTP (password hash and/or keys)."""

    name = "sftp"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        run_script(
            ctx,
            sftp.sftp_enable_script(
                account=_account(ctx),
                password_hash=p.get("password_hash"),
                public_keys=p.get("public_keys", []),
            ),
        )
        ctx.resource("sftp_user", _account(ctx))

    def undo(self, ctx: StepContext) -> None:
        run_script(ctx, sftp.sftp_disable_script(account=_account(ctx)))


class SftpOff(Step):
    name = "sftp_off"

    def apply(self, ctx: StepContext) -> None:
        run_script(ctx, sftp.sftp_disable_script(account=_account(ctx)))


class RemoveSftp(SftpOff):
    """At termination: no SFTP keys may outlive the account (a later user of the name)."""

    name = "remove_sftp"


def _insert(kind: str, steps: list[type[Step]], *, before: str | None = None) -> None:
    """Add steps to one of the engine's kinds, before the named step (or at the end)."""
    existing = KINDS[kind].steps
    names = [s.name for s in existing]
    if any(s.name in names for s in steps):
        return  # imported twice
    at = names.index(before) if before in names else len(existing)
    existing[at:at] = steps


_insert(Operation.Kind.CREATE, [DnsZone, MailDomain, DkimKey], before="nginx_site")
_insert(Operation.Kind.CHANGE_PLAN, [MailLimits])
_insert(Operation.Kind.CREATE, [VerifyDns], before="measure_disk")
_insert(
    Operation.Kind.TERMINATE,
    [RemoveSftp, RemoveMailDomain, RemoveZone],
    before="remove_user",
)

for _kind in (
    OperationKind(name="dns_records", steps=[DnsRecords], description="Change DNS records"),
    OperationKind(
        name="database_create",
        steps=[DatabaseLimit, Database, DatabaseUser],
        description="Create a database and its user",
    ),
    OperationKind(name="database_delete", steps=[DropDatabase], description="Delete a database"),
    OperationKind(
        name="database_password", steps=[DatabasePassword], description="Change a database password"
    ),
    OperationKind(
        name="mailbox_create", steps=[MailboxLimit, Mailbox], description="Create a mailbox"
    ),
    OperationKind(name="mailbox_delete", steps=[DeleteMailbox], description="Delete a mailbox"),
    OperationKind(
        name="mailbox_password", steps=[MailboxPassword], description="Change a mailbox password"
    ),
    OperationKind(name="forwarder_set", steps=[Forwarder], description="Set a mail forwarder"),
    OperationKind(
        name="forwarder_delete", steps=[DeleteForwarder], description="Delete a mail forwarder"
    ),
    OperationKind(name="mailbox_quota", steps=[MailboxQuota], description="Change a mailbox quota"),
    OperationKind(name="mail_catchall", steps=[CatchAll], description="Set the catch-all address"),
    OperationKind(name="mail_autoreply", steps=[AutoReply], description="Set an auto-reply"),
    OperationKind(name="dkim_rotate", steps=[DkimKey], description="Rotate the DKIM key"),
    OperationKind(
        name="wordpress_install",
        steps=[DatabaseLimit, WordPress],
        description="Install WordPress",
    ),
    OperationKind(name="backup_create", steps=[Backup], description="Back up the account"),
    OperationKind(name="sftp_enable", steps=[Sftp], description="Allow SFTP access"),
    OperationKind(name="sftp_disable", steps=[SftpOff], description="Turn SFTP access off"),
    OperationKind(name="backup_restore", steps=[Restore], description="Restore a backup"),
):
    register_kind(_kind)
