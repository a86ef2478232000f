"""Node resources as engine steps (the operation kinds using them are in
``provisioning.kinds``).

``create`` uses ``dns_zone`` (the domain's zone on the node's PowerDNS, with SPF and
DMARC), ``mail_domain`` (with the plan's sending limits) and ``dkim_key`` (a key made on the
node, published in the zone, then signed with) before the site goes live, and
``verify_dns`` after it: the nameserver is asked with dnspython and its answers are stored
on the step run, so "was DNS configured?" has a recorded answer. ``terminate`` removes the
account's databases and database users, its backups, its certificate and HTTPS, the mail
domain (with its mail) and the zone. ``change_plan`` sets the new plan's sending limits
(``mail_limits``).

The resource kinds (params hold validated values and password *hashes* only, never a
password; ``provisioning.resources.services`` builds them):

``dns_records``, ``database_create``, ``database_delete``, ``database_password``,
``mailbox_create``, ``mailbox_delete``, ``mailbox_password``, ``mailbox_quota``,
``forwarder_set``, ``forwarder_delete``, ``mail_catchall``, ``mail_autoreply``,
``dkim_rotate``, ``wordpress_install``, ``backup_create``, ``backup_restore``,
``sftp_enable``, ``sftp_disable``.

DNS, databases, backups, WordPress and certificates are node agent actions (``dns.*``,
``db.*``, ``backup.*``, ``wordpress.*``, ``cert.*``): the PowerDNS API key stays on the node,
and whatever lies in a customer's home is touched by the agent as the customer's user or
through handles that follow no link. Each ensure action answers whether it created what it
reports; the step records that, and its undo removes only what its own operation created.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

from billing.models import Plan
from provisioning.errors import (
    PermanentStepError,
    ProvisioningRefused,
    TransientStepError,
)
from provisioning.models import NodeResource, StepRun
from provisioning.resources import dns as hwdns
from provisioning.resources import mail as hwmail
from provisioning.resources import sftp
from provisioning.resources.agent import agent_failure
from provisioning.ssh import action
from provisioning.steps.base import Step, StepContext
from provisioning.validators import check_limit, domain_to_ascii, validate_email, validate_ip


def _refuse(exc: ProvisioningRefused, *, clean: bool = False) -> None:
    raise PermanentStepError(str(exc.message), clean=clean, code=exc.code or "") from exc


def _address(ctx: StepContext) -> str:
    ip = ctx.service.ip
    return str(ip.address if ip is not None else ctx.node.address)


def _mail_from(ctx: StepContext) -> list[str]:
    """The addresses the account's mail may leave from (SPF): its own and its node's."""
    found: list[str] = []
    ip = ctx.service.ip
    for candidate in (ip.address if ip is not None else None, ctx.node.address):
        try:
            address = validate_ip(candidate)
        except ProvisioningRefused:
            continue  # the node is reached by name: its address is not known here
        if address not in found:
            found.append(address)
    return found


def _zone_rrsets(ctx: StepContext) -> list[hwdns.RRset]:
    """The zone a hosted domain starts with (as the node's ``dns.zone_ensure`` makes it)."""
    return hwdns.zone_rrsets(
        domain=ctx.service.domain,
        ipv4=_address(ctx),
        nameservers=list(settings.DNS_NAMESERVERS),
        serial=hwdns.next_serial(0, dt.datetime.now(dt.UTC).date()),
        mail_from=_mail_from(ctx),
    )


def _policy_records(ctx: StepContext) -> list[dict[str, Any]]:
    """The zone's mail policy records (SPF, DMARC) for the node's ``dns.zone_ensure``."""
    return [
        {"name": r.name, "type": r.rtype, "ttl": r.ttl, "contents": list(r.contents)}
        for r in _zone_rrsets(ctx)
        if r.rtype == "TXT"
    ]


def dns_port(ctx: StepContext) -> int:
    """The port the node's nameserver answers on (asked from the node)."""
    [result] = ctx.agent([action("dns.server")])
    return int(result.data.get("port", 53))


class DnsZone(Step):
    """The domain's zone: SOA, NS, A for the apex, www and mail, MX and SPF."""

    name = "dns_zone"

    def apply(self, ctx: StepContext) -> None:
        domain = domain_to_ascii(ctx.service.domain)
        # A zone another live account holds on this node is never written to.
        ctx.check_free(NodeResource.Kind.ZONE, domain)
        [result] = ctx.agent(
            [
                action(
                    "dns.zone_ensure",
                    domain=domain,
                    ipv4=_address(ctx),
                    nameservers=list(settings.DNS_NAMESERVERS),
                    records=_policy_records(ctx),
                )
            ]
        )
        ctx.resource("dns_zone", domain)
        ctx.resource("created", bool(result.data.get("created")))
        ctx.own(NodeResource.Kind.ZONE, domain, created=bool(result.data.get("created")))

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(NodeResource.Kind.ZONE, actions=_zone_remove)


def _zone_remove(row: NodeResource) -> list[Any]:
    return [action("dns.zone_remove", domain=domain_to_ascii(row.name))]


def _mail_domain_remove(row: NodeResource) -> list[Any]:
    return [action("mail.domain.remove", domain=domain_to_ascii(row.name), purge=True)]


class VerifyDns(Step):
    """Ask the node's nameserver for the zone with dnspython and store what it answered."""

    name = "verify_dns"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        check = hwdns.verify_zone(
            ctx.service.domain,
            nameserver=ctx.node.address,
            port=dns_port(ctx),
            expect=_zone_rrsets(ctx),
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
        domain = domain_to_ascii(ctx.service.domain)
        # A mail domain another live account holds on this node is never touched.
        ctx.check_free(NodeResource.Kind.MAIL_DOMAIN, domain)
        listed, result = ctx.agent(
            [
                action("mail.mailbox.list", domain=domain),
                action(
                    "mail.domain.ensure",
                    domain=domain,
                    account=_account(ctx),
                    account_hour=ctx.plan.mail_per_hour,
                    mailbox_hour=ctx.plan.mail_per_hour_mailbox,
                ),
            ]
        )
        ctx.resource("mail_domain", ctx.service.domain)
        # The agent answers "changed" only: a domain line that was missing is a new domain
        # (one with mailboxes already was there, whatever its limits said).
        created = result.changed and not listed.data.get("mailboxes")
        ctx.own(NodeResource.Kind.MAIL_DOMAIN, domain, created=bool(created))

    def undo(self, ctx: StepContext) -> None:
        rows = ctx.made_here(NodeResource.Kind.MAIL_DOMAIN)
        ctx.undo_owned(NodeResource.Kind.MAIL_DOMAIN, actions=_mail_domain_remove)
        if any(r.created for r in rows):
            ctx.agent([action("mail.sni.refresh")])


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
        domain = domain_to_ascii(ctx.service.domain)
        selector = f"hw{ctx.operation.pk}"
        [made] = ctx.agent([action("mail.dkim.key", domain=domain, selector=selector)])
        try:
            name, text = hwmail.dkim_record(
                selector=selector, public_key=str(made.data.get("public_key", ""))
            )
            record = hwdns.make_rrset(
                zone=domain, name=name, rtype="TXT", contents=[text], ttl=DKIM_TTL
            )
        except ProvisioningRefused as exc:
            _refuse(exc)
        [zone] = ctx.agent([action("dns.zone_get", domain=domain)])
        if not zone.data.get("exists"):
            raise PermanentStepError(f"the zone {domain} does not exist on the node")
        current = [
            hwdns.RRset(r["name"], r["type"], int(r["ttl"]), tuple(r["contents"]))
            for r in zone.data.get("rrsets", [])
        ]
        older = sorted(
            (s for s in _dkim_selectors(current, domain) if s != selector), key=_selector_age
        )
        stale = [[f"{s}._domainkey.{hwdns.fqdn(domain)}", "TXT"] for s in older[:-1]]
        replace = [
            {
                "name": record.name,
                "type": record.rtype,
                "ttl": record.ttl,
                "contents": list(record.contents),
            }
        ]
        ctx.agent([action("dns.records", domain=domain, replace=replace, delete=stale)])
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
                    domain=domain_to_ascii(ctx.service.domain),
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


class RemoveZone(Step):
    """At termination: the zones the service holds (with their record sets), and no other:
    a zone of the same name that another account holds has no row of this service."""

    name = "remove_dns_zone"

    def apply(self, ctx: StepContext) -> None:
        zones = ctx.owned(NodeResource.Kind.ZONE)
        ctx.remove_owned(zones, [a for z in zones for a in _zone_remove(z)])
        ctx.disown(ctx.owned(NodeResource.Kind.RECORD_SET))

    def undo(self, ctx: StepContext) -> None:
        """Termination is not compensated: the account's files are gone too."""


class RemoveMailDomain(Step):
    """At termination: the mail domains the service holds, with their mailboxes and stored
    mail; mailboxes it holds in no domain of its own are removed one by one."""

    name = "remove_mail_domain"

    def apply(self, ctx: StepContext) -> None:
        domains = ctx.owned(NodeResource.Kind.MAIL_DOMAIN)
        held = {d.name.lower() for d in domains}
        mailboxes = ctx.owned(NodeResource.Kind.MAILBOX)
        inside = [m for m in mailboxes if m.name.rsplit("@", 1)[-1].lower() in held]
        alone = [m for m in mailboxes if m not in inside]
        ctx.remove_owned(
            alone,
            [action("mail.mailbox.remove", address=validate_email(m.name)) for m in alone],
        )
        actions = [a for d in domains for a in _mail_domain_remove(d)]
        ctx.remove_owned([*domains, *inside], [*actions, action("mail.sni.refresh")])

    def undo(self, ctx: StepContext) -> None:
        """Termination is not compensated."""


# --- customer resources -------------------------------------------------------------------


def _account(ctx: StepContext) -> str:
    return str(ctx.service.username)


class DnsRecords(Step):
    """Replace or delete RRsets in the domain's zone (one atomic change, new serial).

    The node answers the RRsets the change replaced; they are recorded, and an undo puts back
    exactly those (and removes RRsets the change added).
    """

    name = "dns_records"

    def apply(self, ctx: StepContext) -> None:
        [result] = ctx.agent(
            [
                action(
                    "dns.records",
                    domain=domain_to_ascii(ctx.service.domain),
                    replace=list(ctx.params.get("replace", [])),
                    delete=[list(x) for x in ctx.params.get("delete", [])],
                )
            ]
        )
        previous = result.data.get("previous", [])
        ctx.resource("previous", previous)
        ctx.resource("serial", result.data.get("serial"))
        _record_rows(
            ctx,
            replaced=list(ctx.params.get("replace", [])),
            deleted=[(n, t) for n, t in ctx.params.get("delete", [])],
            existed={(r["name"], r["type"]) for r in previous},
        )

    def undo(self, ctx: StepContext) -> None:
        runs = StepRun.objects.filter(
            operation=ctx.operation, step=self.name, direction="apply"
        ).order_by("-id")
        previous = next((r.resources["previous"] for r in runs if "previous" in r.resources), None)
        if previous is None:
            return  # the change was never made
        touched = {(r["name"], r["type"]) for r in ctx.params.get("replace", [])}
        touched |= {(n, t) for n, t in ctx.params.get("delete", [])}
        gone = touched - {(r["name"], r["type"]) for r in previous}
        ctx.agent(
            [
                action(
                    "dns.records",
                    domain=domain_to_ascii(ctx.service.domain),
                    replace=previous,
                    delete=[list(x) for x in sorted(gone)],
                )
            ]
        )
        _record_rows(ctx, replaced=previous, deleted=sorted(gone), existed=set())


def _record_rows(
    ctx: StepContext,
    *,
    replaced: list[dict[str, Any]],
    deleted: list[tuple[str, str]],
    existed: set[tuple[str, str]],
) -> None:
    """Keep the service's record set rows as the zone now is: one per RRset it set."""
    for name, rtype in deleted:
        ctx.disown(ctx.owned(NodeResource.Kind.RECORD_SET, name=f"{name} {rtype}"))
    for r in replaced:
        ctx.own(
            NodeResource.Kind.RECORD_SET,
            f"{r['name']} {r['type']}",
            created=(r["name"], r["type"]) not in existed,
            detail={k: r[k] for k in ("name", "type", "ttl", "contents") if k in r},
        )


def _db_name(ctx: StepContext, name: str) -> str:
    """``<account>_<name>`` from a name given with or without the prefix (params hold the
    full name; the agent checks again that it is the account's)."""
    account = _account(ctx)
    return name if name == account or name.startswith(account + "_") else f"{account}_{name}"


class DatabaseLimit(Step):
    """Refuse a database over the plan's limit, counting what is really on the node."""

    name = "database_limit"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        wanted = _db_name(ctx, ctx.params["name"])
        [result] = ctx.agent([action("db.inventory", account=_account(ctx))])
        existing = [d for d in result.data.get("databases", []) if d != wanted]
        try:
            check_limit(what="databases", used=len(existing), allowed=ctx.plan.databases)
        except ProvisioningRefused as exc:
            _refuse(exc, clean=True)


class Database(Step):
    name = "customer_database"

    def apply(self, ctx: StepContext) -> None:
        name = _db_name(ctx, ctx.params["name"])
        [result] = ctx.agent([action("db.ensure", account=_account(ctx), name=name)])
        ctx.resource("database", name)
        ctx.resource("created", bool(result.data.get("created")))
        ctx.own(NodeResource.Kind.DATABASE, name, created=bool(result.data.get("created")))

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.DATABASE,
            actions=lambda row: [action("db.remove", account=_account(ctx), name=row.name)],
        )


class DatabaseUser(Step):
    """The database's user, at localhost and at 127.0.0.1 with the same password."""

    name = "customer_database_user"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        user = _db_name(ctx, p["user"])
        [result] = ctx.agent(
            [
                action(
                    "db.user_ensure",
                    secret=("password_hash",),
                    account=_account(ctx),
                    user=user,
                    password_hash=p["password_hash"],
                    databases=[_db_name(ctx, p["name"])],
                )
            ]
        )
        ctx.resource("database_user", user)
        ctx.resource("created", bool(result.data.get("created")))
        ctx.own(
            NodeResource.Kind.DATABASE_USER,
            user,
            created=bool(result.data.get("created")),
            detail={"databases": [_db_name(ctx, p["name"])]},
        )

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.DATABASE_USER,
            actions=lambda row: [action("db.user_remove", account=_account(ctx), user=row.name)],
        )


class DropDatabase(Step):
    """Drop the database and its user (not compensated: the data is gone)."""

    name = "drop_customer_database"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        name = _db_name(ctx, p["name"])
        actions = [action("db.remove", account=_account(ctx), name=name)]
        rows = ctx.owned(NodeResource.Kind.DATABASE, name=name)
        if p.get("user"):
            user = _db_name(ctx, p["user"])
            actions.append(action("db.user_remove", account=_account(ctx), user=user))
            rows += ctx.owned(NodeResource.Kind.DATABASE_USER, name=user)
        ctx.removing(rows)
        ctx.agent(actions)
        ctx.disown(rows)


class DatabasePassword(Step):
    name = "customer_database_password"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        ctx.agent(
            [
                action(
                    "db.user_password",
                    secret=("password_hash",),
                    account=_account(ctx),
                    user=_db_name(ctx, p["user"]),
                    password_hash=p["password_hash"],
                )
            ]
        )


class MailboxLimit(Step):
    """Refuse a mailbox over the plan's limit, counting the domain's mailboxes on the node."""

    name = "mailbox_limit"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        domain = domain_to_ascii(ctx.service.domain)
        address = validate_email(ctx.params["address"])
        [listed] = ctx.agent([action("mail.mailbox.list", domain=domain)])
        existing = [a for a in listed.data.get("mailboxes", []) if a != address]
        try:
            check_limit(what="mailboxes", used=len(existing), allowed=ctx.plan.mailboxes)
        except ProvisioningRefused as exc:
            _refuse(exc, clean=True)


class Mailbox(Step):
    name = "mailbox"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        address = validate_email(p["address"])
        domain = address.rsplit("@", 1)[1]
        if not ctx.owned(NodeResource.Kind.MAIL_DOMAIN, name=domain):
            raise PermanentStepError(
                f"{domain} does not receive mail for this account on its server", clean=True
            )
        listed, _ = ctx.agent(
            [
                action("mail.mailbox.list", domain=domain),
                action(
                    "mail.mailbox.ensure",
                    secret=("password_hash",),
                    address=address,
                    password_hash=p["password_hash"],
                    quota_mb=int(p["quota_mb"]),
                ),
            ]
        )
        ctx.resource("mailbox", p["address"])
        ctx.own(
            NodeResource.Kind.MAILBOX,
            address,
            created=address not in listed.data.get("mailboxes", []),
            detail={"quota_mb": int(p["quota_mb"])},
        )

    def undo(self, ctx: StepContext) -> None:
        # A mailbox that was there before (with its mail) stays.
        ctx.undo_owned(
            NodeResource.Kind.MAILBOX,
            actions=lambda row: [action("mail.mailbox.remove", address=validate_email(row.name))],
        )


class DeleteMailbox(Step):
    name = "delete_mailbox"

    def apply(self, ctx: StepContext) -> None:
        address = validate_email(ctx.params["address"])
        rows = ctx.owned(NodeResource.Kind.MAILBOX, name=address)
        ctx.removing(rows)
        ctx.agent([action("mail.mailbox.remove", address=address)])
        ctx.disown(rows)


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
        for row in ctx.owned(NodeResource.Kind.MAILBOX, name=p["address"]):
            ctx.own(row.kind, row.name, detail={**row.detail, "quota_mb": int(p["quota_mb"])})


class CatchAll(Step):
    """Set (``target``) or remove (empty ``target``) the domain's catch-all address."""

    name = "mail_catchall"

    def apply(self, ctx: StepContext) -> None:
        target = ctx.params.get("target") or ""
        ctx.agent(
            [
                action(
                    "mail.catchall.set",
                    domain=domain_to_ascii(ctx.service.domain),
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
    """WordPress from the node's package in the account's docroot, with its own database.

    The node agent does it as the account's user and refuses a site that has files with a
    reason naming them; the database password is made on the node and never leaves it.
    """

    name = "wordpress"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        [result] = ctx.agent(
            [
                action(
                    "wordpress.install",
                    secret=("admin_password_hash",),
                    account=_account(ctx),
                    domain=domain_to_ascii(ctx.service.domain),
                    title=p["title"],
                    admin_user=p["admin_user"],
                    admin_email=p["admin_email"],
                    admin_password_hash=p["admin_password_hash"],
                )
            ],
            check=False,
        )
        db = f"{_account(ctx)}_wp"
        if not result.ok:
            # What the install made before it failed, so that the undo removes that only.
            made = " ".join((result.error or {}).get("changed", []))
            ctx.resource("created", "files" in made)
            ctx.resource("database_created", "database " in made)
            ctx.resource("user_created", "database user" in made)
            if "database " in made:
                ctx.own(NodeResource.Kind.DATABASE, db)
            if "database user" in made:
                ctx.own(NodeResource.Kind.DATABASE_USER, db, detail={"databases": [db]})
            raise agent_failure(result)
        ctx.resource("wordpress", f"/home/{_account(ctx)}/public_html")
        ctx.resource("database", result.data.get("database"))
        for key in ("created", "database_created", "user_created"):
            ctx.resource(key, bool(result.data.get(key)))
        ctx.own(
            NodeResource.Kind.DATABASE,
            db,
            created=bool(result.data.get("database_created")),
            detail={"wordpress": True},
        )
        ctx.own(
            NodeResource.Kind.DATABASE_USER,
            db,
            created=bool(result.data.get("user_created")),
            detail={"databases": [db], "wordpress": True},
        )

    def undo(self, ctx: StepContext) -> None:
        files = any(r.resources.get("created") for r in _apply_runs(ctx, self.name))
        rows = ctx.made_here(NodeResource.Kind.DATABASE, NodeResource.Kind.DATABASE_USER)
        made = {r.kind for r in rows if r.created}
        if files or made:
            ctx.removing([r for r in rows if r.created])
            ctx.agent(
                [
                    action(
                        "wordpress.remove",
                        account=_account(ctx),
                        files=files,
                        database=NodeResource.Kind.DATABASE in made,
                        user=NodeResource.Kind.DATABASE_USER in made,
                    )
                ]
            )
        ctx.disown(rows)


def _apply_runs(ctx: StepContext, step: str) -> list[StepRun]:
    return list(StepRun.objects.filter(operation=ctx.operation, step=step, direction="apply"))


class Backup(Step):
    """Back up the account's files and every database, verify it, prune old backups."""

    name = "backup"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        args: dict[str, Any] = {"account": _account(ctx), "backup_id": p["backup_id"]}
        if p.get("keep"):
            args["keep"] = int(p["keep"])
        [result] = ctx.agent([action("backup.create", **args)])
        ctx.resource("report", result.data.get("report", []))
        ctx.resource("verified", bool(result.data.get("verified")))
        ctx.resource("created", bool(result.data.get("created")))
        ctx.own(
            NodeResource.Kind.BACKUP,
            backup_name(_account(ctx), p["backup_id"]),
            detail={"backup_id": p["backup_id"], "verified": bool(result.data.get("verified"))},
        )
        if result.data.get("pruned"):
            ctx.resource("pruned", result.data["pruned"])
            for old in result.data["pruned"]:
                name = backup_name(_account(ctx), str(old))
                ctx.disown(ctx.owned(NodeResource.Kind.BACKUP, name=name))

    def undo(self, ctx: StepContext) -> None:
        # The backup id is this operation's own: whatever is stored under it was made by it.
        rows = ctx.made_here(NodeResource.Kind.BACKUP)
        ctx.removing(rows)
        ctx.agent(
            [action("backup.remove", account=_account(ctx), backup_id=ctx.params["backup_id"])]
        )
        ctx.disown(rows)


def backup_name(account: str, backup_id: str) -> str:
    """A backup row's name: backup ids are per account, rows are per node."""
    return f"{account}/{backup_id}"


class Restore(Step):
    """Restore files and databases from a verified backup (not compensated).

    The files become exactly those of the backup: files made since are removed.
    """

    name = "restore"

    def apply(self, ctx: StepContext) -> None:
        [result] = ctx.agent(
            [action("backup.restore", account=_account(ctx), backup_id=ctx.params["backup_id"])]
        )
        ctx.resource("databases", result.data.get("databases", []))


class RemoveAccountData(Step):
    """At termination: the account's backups, HTTPS, certificates and cron jobs, as the
    service's rows list them. While the service holds the account's Linux user (so no one
    else holds the name on this node), whatever MariaDB and the backup store still hold under
    the account's name goes too: a database made outside the panel's operations cannot
    outlive it."""

    name = "remove_account_data"

    def apply(self, ctx: StepContext) -> None:
        account = _account(ctx)
        kinds = NodeResource.Kind
        backups = ctx.owned(kinds.BACKUP)
        https = ctx.owned(kinds.HTTPS)
        certs = ctx.owned(kinds.CERTIFICATE)
        holds_account = bool(ctx.owned(kinds.LINUX_USER, name=account))
        actions = []
        if holds_account:
            [found] = ctx.agent([action("db.inventory", account=account)])
            actions += [
                action("db.remove", account=account, name=name)
                for name in found.data.get("databases", [])
            ]
            actions += [
                action("db.user_remove", account=account, user=user)
                for user in found.data.get("users", {})
            ]
        if backups or holds_account:
            actions.append(action("backup.remove_all", account=account))
        actions += [action("cert.https_remove", account=row.name) for row in https]
        actions += [action("cert.remove", domain=domain_to_ascii(row.name)) for row in certs]
        if certs:
            actions.append(action("mail.sni.refresh"))
        crons = ctx.owned(kinds.CRON_JOB)
        actions += [
            action("cron.remove", user=account, job=int(row.detail.get("job_id", 0)))
            for row in crons
            if row.detail.get("job_id")
        ]
        rows = [*backups, *https, *certs, *crons]
        ctx.removing(rows)
        if actions:
            ctx.agent(actions)
        ctx.disown(rows)

    def undo(self, ctx: StepContext) -> None:
        """Termination is not compensated."""


class Sftp(Step):
    """Let the account's Linux user in over chrooted SFTP (password hash and/or keys)."""

    name = "sftp"

    def apply(self, ctx: StepContext) -> None:
        p = ctx.params
        keys = [sftp.validate_public_key(k) for k in p.get("public_keys", [])]
        ctx.agent(
            [
                action(
                    "sftp.enable",
                    user=_account(ctx),
                    owner=f"hostwright service {ctx.service.pk}",
                    password_hash=p.get("password_hash") or "",
                    public_keys=keys,
                    secret=("password_hash",),
                )
            ]
        )
        ctx.resource("sftp_user", _account(ctx))
        ctx.own(NodeResource.Kind.SFTP, _account(ctx))

    def undo(self, ctx: StepContext) -> None:
        # Access that was on before this operation stays on (with the keys it had then).
        ctx.undo_owned(
            NodeResource.Kind.SFTP, actions=lambda row: [action("sftp.disable", user=row.name)]
        )


class SftpOff(Step):
    name = "sftp_off"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.SFTP)
        ctx.removing(rows)
        ctx.agent([action("sftp.disable", user=_account(ctx))])
        ctx.disown(rows)


class RemoveSftp(Step):
    """At termination: no SFTP keys may outlive the account (a later user of the name). Only
    for the service that holds the account's Linux user or its SFTP access."""

    name = "remove_sftp"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.SFTP)
        if rows or ctx.owned(NodeResource.Kind.LINUX_USER, name=_account(ctx)):
            ctx.removing(rows)
            ctx.agent([action("sftp.disable", user=_account(ctx))])
            ctx.disown(rows)
