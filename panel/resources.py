"""What a service has on its node, and the forms that change it through
``provisioning.resources.services``.

What the service holds on its node (record sets, databases and their users, mailboxes,
backups, SFTP access, WordPress's database) is read from its ``NodeResource`` rows, which the
steps write as the node answers. Settings that are not resources of their own (forwarders,
catch-all, auto-replies, the DKIM selector, the certificate's last attempt) come from the
account's completed operations. An account whose steps recorded no rows (made before they
did) is listed from its operations alone. Two queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import User
from provisioning import validators
from provisioning.errors import ProvisioningRefused
from provisioning.models import CronJob, NodeResource, Operation, Service
from provisioning.resources import cron
from provisioning.resources import dns as hwdns
from provisioning.resources import services as resources

RESOURCE_KINDS = (
    "dns_records",
    "database_create",
    "database_delete",
    "mailbox_create",
    "mailbox_delete",
    "mailbox_quota",
    "forwarder_set",
    "forwarder_delete",
    "mail_catchall",
    "mail_autoreply",
    "dkim_rotate",
    "create",
    "certificate_issue",
    "backup_create",
    "wordpress_install",
    "sftp_enable",
    "sftp_disable",
)


@dataclass
class Resources:
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)  # name -> user
    mailboxes: dict[str, int] = field(default_factory=dict)  # address -> quota
    forwarders: dict[str, list[str]] = field(default_factory=dict)  # source -> targets
    autoreplies: set[str] = field(default_factory=set)  # mailboxes answering by themselves
    catchall: str = ""
    dkim_selector: str = ""
    dmarc_policy: str = "none"
    certificate: str = ""  # "", "issued", "failed", "pending"
    backups: list[str] = field(default_factory=list)  # backup ids, newest first
    wordpress: bool = False
    sftp: bool = False

    @property
    def record_list(self) -> list[dict[str, Any]]:
        return [self.records[k] for k in sorted(self.records)]


def service_resources(*, service: Service) -> Resources:
    """Records, databases, mailboxes, backups and mail settings of the account (rows first,
    see the module's docstring)."""
    found = Resources()
    rows = (
        Operation.objects.filter(service=service, kind__in=RESOURCE_KINDS)
        .order_by("created_at", "id")
        .values_list("pk", "kind", "state", "params")
    )
    for pk, kind, state, params in rows:
        if kind == "certificate_issue":
            found.certificate = {
                "completed": "issued",
                "failed": "failed",
                "rolled_back": "failed",
            }.get(state, "pending")
            continue
        if state != Operation.State.COMPLETED:
            continue
        if kind == "backup_create":
            # The node keeps the newest ``keep`` backups; older ones are gone.
            found.backups = [params["backup_id"], *found.backups][: int(params.get("keep", 7))]
        elif kind == "wordpress_install":
            found.wordpress = True
        elif kind in ("sftp_enable", "sftp_disable"):
            found.sftp = kind == "sftp_enable"
        elif kind == "dns_records":
            for name, rtype in params.get("delete", []):
                found.records.pop((name, rtype), None)
            for r in params.get("replace", []):
                found.records[(r["name"], r["type"])] = r
        elif kind == "database_create":
            found.databases[params["name"]] = params.get("user", "")
        elif kind == "database_delete":
            found.databases.pop(params["name"], None)
        elif kind == "mailbox_create":
            found.mailboxes[params["address"]] = params.get("quota_mb", 0)
        elif kind == "mailbox_delete":
            found.mailboxes.pop(params["address"], None)
            found.autoreplies.discard(params["address"])
        elif kind == "mailbox_quota" and params["address"] in found.mailboxes:
            found.mailboxes[params["address"]] = params["quota_mb"]
        elif kind == "forwarder_set":
            found.forwarders[params["source"]] = list(params["targets"])
        elif kind == "forwarder_delete":
            found.forwarders.pop(params["source"], None)
        elif kind == "mail_catchall":
            found.catchall = params.get("target") or ""
        elif kind == "mail_autoreply":
            if params.get("enabled"):
                found.autoreplies.add(params["address"])
            else:
                found.autoreplies.discard(params["address"])
        elif kind in ("create", "dkim_rotate"):
            found.dkim_selector = f"hw{pk}"  # the DkimKey step's selector
    _from_rows(service, found)
    dmarc = found.records.pop((f"_dmarc.{hwdns.fqdn(service.domain)}", "TXT"), None)
    if dmarc:
        text = " ".join(dmarc["contents"]).strip('"')
        policy = next((t.strip()[2:] for t in text.split(";") if t.strip().startswith("p=")), "")
        found.dmarc_policy = policy or "none"
    return found


def _from_rows(service: Service, found: Resources) -> None:
    """Replace what the operations said about the service's resources by its live rows."""
    if service.node_id is None:
        return
    rows = list(
        NodeResource.objects.filter(
            service=service, node_id=service.node_id, state__in=NodeResource.LIVE_STATES
        )
        .order_by("id")
        .values_list("kind", "name", "detail")
    )
    if not rows:
        return
    kinds = NodeResource.Kind
    prefix = f"{service.username}_"
    users_of = {
        db: name
        for kind, name, detail in rows
        if kind == kinds.DATABASE_USER
        for db in (detail or {}).get("databases", [])
    }
    found.databases = {}
    found.wordpress = False
    for kind, name, detail in rows:
        if kind != kinds.DATABASE or name == f"{service.username}_main":
            continue
        if (detail or {}).get("wordpress"):
            found.wordpress = True
            continue
        user = users_of.get(name, "")
        found.databases[name.removeprefix(prefix)] = user.removeprefix(prefix)
    found.mailboxes = {
        name: int((detail or {}).get("quota_mb", 0))
        for kind, name, detail in rows
        if kind == kinds.MAILBOX
    }
    found.backups = sorted(
        (
            str((detail or {}).get("backup_id", name))
            for kind, name, detail in rows
            if kind == kinds.BACKUP
        ),
        reverse=True,
    )
    found.sftp = any(kind == kinds.SFTP for kind, _, _ in rows)
    found.records = {
        (detail["name"], detail["type"]): detail
        for kind, _, detail in rows
        if kind == kinds.RECORD_SET and detail and "name" in detail
    }


@dataclass(frozen=True)
class MailClientSettings:
    """What a mail client needs, as the node really serves it."""

    server: str
    webmail: str
    rows: tuple[tuple[str, int, str], ...]


def mail_client_settings(*, service: Service) -> MailClientSettings | None:
    node = service.node
    if node is None:
        return None
    server = f"mail.{node.name}"
    return MailClientSettings(
        server=server,
        webmail=f"https://{server}/",
        rows=(
            ("IMAP (incoming)", 993, "SSL/TLS"),
            ("IMAP (incoming)", 143, "STARTTLS"),
            ("POP3 (incoming)", 995, "SSL/TLS"),
            ("POP3 (incoming)", 110, "STARTTLS"),
            ("SMTP (outgoing)", 465, "SSL/TLS"),
            ("SMTP (outgoing)", 587, "STARTTLS"),
        ),
    )


# Which form field an engine refusal is about, by its code.
_FIELD_BY_CODE = {
    "dns_name": "name",
    "dns_type": "rtype",
    "dns_data": "content",
    "dns_cname": "rtype",
    "dns_cname_apex": "name",
    "dns_ttl": "ttl",
    "db_name": "name",
    "password": "password",
    "mailbox": "local_part",
    "mail_quota": "quota_mb",
    "forward": "targets",
    "autoreply": "body",
    "dmarc": "policy",
    "wp_title": "title",
    "wp_admin": "admin_user",
    "email": "admin_email",
    "schedule": "schedule",
    "command": "command",
    "output": "output",
    "mail_to": "mail_to",
}


def refusal_to_form(form: forms.Form, exc: ValidationError) -> None:
    """Put an engine refusal next to the field it concerns (or above the form)."""
    code = getattr(exc, "code", "") or ""
    target = _FIELD_BY_CODE.get(code)
    if target not in form.fields:
        target = None
    for message in exc.messages:
        form.add_error(target, message)


class ResourceForm(forms.Form):
    prefix_name = ""
    #: Its fields' ids on the service page (``id_<slot>_<field>``), where several forms share
    #: field names (name, password): each label must point at its own form's input.
    slot = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self.slot:
            kwargs.setdefault("auto_id", f"id_{self.slot}_%s")
        super().__init__(*args, **kwargs)

    def apply(self, *, service: Service, actor: User) -> Operation:
        raise NotImplementedError

    def save(self, *, service: Service, actor: User) -> Operation | None:
        """Start the change, or put the refusal on the form and return None."""
        try:
            return self.apply(service=service, actor=actor)
        except ProvisioningRefused as exc:
            refusal_to_form(self, exc)
            return None


class DnsRecordForm(ResourceForm):
    slot = "dns"

    name = forms.CharField(
        label="Name", max_length=253, initial="@", help_text="@ for the domain itself, or www"
    )
    rtype = forms.ChoiceField(label="Type", choices=[(t, t) for t in hwdns.EDITABLE_TYPES])
    content = forms.CharField(label="Value", max_length=4000)
    ttl = forms.IntegerField(
        label="TTL (seconds)",
        initial=hwdns.DEFAULT_TTL,
        min_value=hwdns.MIN_TTL,
        max_value=hwdns.MAX_TTL,
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.dns_records_change(
            service=service,
            replace=[
                {"name": d["name"], "type": d["rtype"], "contents": [d["content"]], "ttl": d["ttl"]}
            ],
            actor=actor,
        )


class DnsDeleteForm(ResourceForm):
    slot = "dns_delete"

    name = forms.CharField(max_length=254)
    rtype = forms.ChoiceField(choices=[(t, t) for t in hwdns.EDITABLE_TYPES])

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.dns_records_change(
            service=service, delete=[(d["name"], d["rtype"])], actor=actor
        )


class DatabaseForm(ResourceForm):
    slot = "database"

    name = forms.CharField(label="Database name", max_length=32, help_text="Letters, digits, _")
    password = forms.CharField(
        label="Password", min_length=10, max_length=128, widget=forms.PasswordInput
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.database_create(
            service=service, name=d["name"], user=d["name"], password=d["password"], actor=actor
        )


class DatabaseDeleteForm(ResourceForm):
    slot = "database_delete"

    name = forms.CharField(max_length=64)

    def apply(self, *, service: Service, actor: User) -> Operation:
        name = self.cleaned_data["name"]
        prefix = f"{service.username}_"
        short = name[len(prefix) :] if name.startswith(prefix) else name
        return resources.database_delete(service=service, name=short, user=short, actor=actor)


class MailboxForm(ResourceForm):
    slot = "mailbox"

    local_part = forms.CharField(label="Address", max_length=64, help_text="The part before @")
    password = forms.CharField(
        label="Password", min_length=10, max_length=128, widget=forms.PasswordInput
    )
    quota_mb = forms.IntegerField(label="Quota (MB)", initial=1024, min_value=1, max_value=102400)

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.mailbox_create(
            service=service,
            local_part=d["local_part"],
            password=d["password"],
            quota_mb=d["quota_mb"],
            actor=actor,
        )


class MailboxDeleteForm(ResourceForm):
    slot = "mailbox_delete"

    address = forms.EmailField(max_length=254)

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.mailbox_delete(
            service=service, address=self.cleaned_data["address"], actor=actor
        )


class MailboxPasswordForm(ResourceForm):
    address = forms.EmailField(max_length=254)
    password = forms.CharField(
        label="New password", min_length=10, max_length=128, widget=forms.PasswordInput
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.mailbox_password_change(
            service=service, address=d["address"], password=d["password"], actor=actor
        )


class MailboxQuotaForm(ResourceForm):
    address = forms.EmailField(max_length=254)
    quota_mb = forms.IntegerField(label="Quota (MB)", min_value=1, max_value=102400)

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.mailbox_quota_change(
            service=service, address=d["address"], quota_mb=d["quota_mb"], actor=actor
        )


class AutoReplyForm(ResourceForm):
    address = forms.EmailField(max_length=254)
    enabled = forms.BooleanField(label="Answer incoming mail automatically", required=False)
    subject = forms.CharField(label="Subject", max_length=200, required=False)
    body = forms.CharField(label="Text", max_length=4000, required=False, widget=forms.Textarea)
    days = forms.IntegerField(
        label="Answer the same sender again after (days)", min_value=1, max_value=30, initial=1
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("enabled") and not (data.get("subject") and data.get("body")):
            raise ValidationError("An auto-reply needs a subject and a text.")
        return data

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        return resources.autoreply_set(
            service=service,
            address=d["address"],
            subject=d.get("subject") or "",
            body=d.get("body") or "",
            days=d.get("days") or 1,
            enabled=bool(d.get("enabled")),
            actor=actor,
        )


class ForwarderForm(ResourceForm):
    local_part = forms.CharField(
        label="Address", max_length=64, help_text="The part before @ (an alias or a mailbox)"
    )
    targets = forms.CharField(
        label="Deliver to", max_length=2000, help_text="One or more addresses, comma-separated"
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        targets = [t.strip() for t in d["targets"].replace(";", ",").split(",") if t.strip()]
        return resources.forwarder_set(
            service=service,
            source=f"{d['local_part'].strip()}@{service.domain}",
            targets=targets,
            actor=actor,
        )


class ForwarderDeleteForm(ResourceForm):
    source = forms.EmailField(max_length=254)

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.forwarder_delete(
            service=service, source=self.cleaned_data["source"], actor=actor
        )


class CatchAllForm(ResourceForm):
    target = forms.EmailField(
        label="Catch-all address",
        max_length=254,
        required=False,
        help_text="Mail to addresses that do not exist goes here; empty: it is refused",
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.catchall_set(
            service=service, target=self.cleaned_data.get("target") or None, actor=actor
        )


class DkimRotateForm(ResourceForm):
    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.dkim_rotate(service=service, actor=actor)


class DmarcForm(ResourceForm):
    policy = forms.ChoiceField(
        label="DMARC policy",
        choices=[
            ("none", "none: only reports"),
            ("quarantine", "quarantine: failing mail to spam"),
            ("reject", "reject: failing mail refused"),
        ],
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.dmarc_set(service=service, policy=self.cleaned_data["policy"], actor=actor)


class CertificateForm(ResourceForm):
    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.certificate_issue(service=service, actor=actor)


class BackupForm(ResourceForm):
    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.backup_create(service=service, actor=actor)


class RestoreForm(ResourceForm):
    slot = "restore"

    backup_id = forms.CharField(max_length=40)

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.backup_restore(
            service=service, backup_id=self.cleaned_data["backup_id"], actor=actor
        )


class WordPressForm(ResourceForm):
    slot = "wordpress"

    title = forms.CharField(label="Site title", max_length=100)
    admin_user = forms.CharField(
        label="Admin user name", max_length=60, help_text="Letters, digits, . _ -"
    )
    admin_email = forms.EmailField(label="Admin e-mail")

    #: The admin password, shown once on the page that answers the request; never stored.
    password = ""

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        operation, self.password = resources.wordpress_install(
            service=service,
            title=d["title"],
            admin_user=d["admin_user"],
            admin_email=d["admin_email"],
            actor=actor,
        )
        return operation


class SftpForm(ResourceForm):
    slot = "sftp"

    password = forms.CharField(
        label="SFTP password", min_length=12, max_length=128, widget=forms.PasswordInput
    )

    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.sftp_enable(
            service=service, password=self.cleaned_data["password"], actor=actor
        )


class SftpDisableForm(ResourceForm):
    def apply(self, *, service: Service, actor: User) -> Operation:
        return resources.sftp_disable(service=service, actor=actor)


class CronJobForm(ResourceForm):
    """Add a cron job, or change one (``job`` names it)."""

    slot = "cron"

    job = forms.IntegerField(required=False, widget=forms.HiddenInput)
    schedule = forms.CharField(
        label="Schedule",
        max_length=100,
        help_text="Minute, hour, day of month, month, day of week (e.g. */15 * * * *), "
        "or @hourly, @daily, @weekly, @monthly.",
    )
    command = forms.CharField(
        label="Command",
        max_length=validators.CRON_COMMAND_MAX,
        help_text="Runs as your account's user in your home, e.g. php public_html/cron.php",
    )
    output = forms.ChoiceField(label="Output", choices=CronJob.Output.choices)
    mail_to = forms.EmailField(
        label="Mail the output to",
        required=False,
        help_text="When mailed; your own address if empty. Sent only when there is output.",
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def apply(self, *, service: Service, actor: User) -> Operation:
        d = self.cleaned_data
        job = None
        if d.get("job"):
            job = CronJob.objects.filter(service=service, pk=d["job"]).first()
            if job is None:
                raise ProvisioningRefused("There is no such cron job.", code="cron")
        return cron.cron_job_save(
            service=service,
            job=job,
            schedule=d["schedule"],
            command=d["command"],
            output=d["output"],
            mail_to=d.get("mail_to") or "",
            enabled=bool(d.get("enabled")),
            actor=actor,
        )


class CronDeleteForm(ResourceForm):
    job = forms.IntegerField(widget=forms.HiddenInput)

    def apply(self, *, service: Service, actor: User) -> Operation:
        job = CronJob.objects.filter(service=service, pk=self.cleaned_data["job"]).first()
        if job is None:
            raise ProvisioningRefused("There is no such cron job.", code="cron")
        return cron.cron_job_delete(service=service, job=job, actor=actor)


# action name -> (form, the form's slot on the service page when it shows errors)
RESOURCE_ACTIONS: dict[str, tuple[type[ResourceForm], str]] = {
    "dns-add": (DnsRecordForm, "dns_form"),
    "dns-delete": (DnsDeleteForm, "dns_form"),
    "database-add": (DatabaseForm, "database_form"),
    "database-delete": (DatabaseDeleteForm, "database_form"),
    "mailbox-add": (MailboxForm, "mailbox_form"),
    "mailbox-delete": (MailboxDeleteForm, "mailbox_form"),
    "mailbox-password": (MailboxPasswordForm, "mailbox_form"),
    "mailbox-quota": (MailboxQuotaForm, "mailbox_form"),
    "mailbox-autoreply": (AutoReplyForm, "mailbox_form"),
    "forwarder-add": (ForwarderForm, "forwarder_form"),
    "forwarder-delete": (ForwarderDeleteForm, "forwarder_form"),
    "mail-catchall": (CatchAllForm, "mailbox_form"),
    "mail-dkim-rotate": (DkimRotateForm, "mailbox_form"),
    "mail-dmarc": (DmarcForm, "mailbox_form"),
    "certificate": (CertificateForm, "certificate_form"),
    "backup-add": (BackupForm, "backup_form"),
    "backup-restore": (RestoreForm, "backup_form"),
    "wordpress-add": (WordPressForm, "wordpress_form"),
    "sftp-add": (SftpForm, "sftp_form"),
    "sftp-disable": (SftpDisableForm, "sftp_form"),
    "cron-add": (CronJobForm, "cron_form"),
    "cron-edit": (CronJobForm, "cron_form"),
    "cron-delete": (CronDeleteForm, "cron_form"),
}
