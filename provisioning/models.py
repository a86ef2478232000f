"""Nodes, IP addresses, services (hosting accounts) and the operations that change them.

An ``Operation`` is one provisioning action on a service. Its state machine, its events
and its step runs together answer "what happened to this order" without reading logs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django_fsm import FSMField, transition


class NodeGroup(models.Model):
    """Nodes that new accounts are spread over by one placement policy.

    Plans pinned to groups place their accounts only on those groups' nodes; a ``reserved``
    group takes no other plan's accounts. Groups are tried in name order: the first with a
    node that has room wins, and its policy picks the node.
    """

    class Policy(models.TextChoices):
        MOST_FREE = "most_free", "Most free capacity"
        FEWEST_ACCOUNTS = "fewest_accounts", "Fewest accounts"
        RANDOM = "random", "Random"

    name = models.CharField(max_length=63, unique=True)
    policy = models.CharField(max_length=20, choices=Policy.choices, default=Policy.MOST_FREE)
    reserved = models.BooleanField(
        default=False, help_text="Only plans pinned to this group place accounts on its nodes."
    )
    plans = models.ManyToManyField(
        "billing.Plan",
        blank=True,
        related_name="node_groups",
        help_text="Plans whose accounts go only to this group's nodes (pinned).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A hosting server reached over SSH, with its host key pinned."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DRAINING = "draining", "Draining (no new accounts)"
        OFFLINE = "offline", "Offline"

    ROLES = ("web", "mail", "dns", "db")

    name = models.CharField(max_length=63, unique=True)
    address = models.CharField("SSH address", max_length=253)
    port = models.PositiveIntegerField("SSH port", default=22)
    ssh_user = models.CharField("SSH user", max_length=32, default="root")
    host_key = models.TextField(
        blank=True,
        help_text="The pinned host key ('ssh-ed25519 AAAA...'). Connections presenting any "
        "other key are refused.",
    )
    roles = models.JSONField(default=list, help_text='e.g. ["web", "db"]')
    group = models.ForeignKey(
        NodeGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="nodes"
    )
    capacity_accounts = models.PositiveIntegerField(default=500)
    capacity_disk_mb = models.PositiveBigIntegerField(default=500_000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    health = models.JSONField(default=dict, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def has_role(self, role: str) -> bool:
        return role in (self.roles or [])


class IPAddress(models.Model):
    """An address in a pool. Shared addresses serve many accounts; dedicated ones one."""

    class Kind(models.TextChoices):
        SHARED = "shared", "Shared"
        DEDICATED = "dedicated", "Dedicated"

    address = models.GenericIPAddressField(unique=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="ip_addresses")
    pool = models.CharField(max_length=50, default="default")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SHARED)
    # Shared addresses are handed out round-robin: the one used longest ago goes next.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node", "address"]
        verbose_name = "IP address"
        verbose_name_plural = "IP addresses"

    def __str__(self) -> str:
        return f"{self.address} ({self.kind})"


class Service(models.Model):
    """A customer's hosting account on one node."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        TERMINATED = "terminated", "Terminated"
        FAILED = "failed", "Failed"

    customer = models.ForeignKey(
        "accounts.Customer", on_delete=models.PROTECT, related_name="services"
    )
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="services")
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.PROTECT, related_name="services"
    )
    ip = models.ForeignKey(
        IPAddress, null=True, blank=True, on_delete=models.SET_NULL, related_name="services"
    )
    username = models.CharField("Linux user", max_length=32)
    domain = models.CharField("primary domain", max_length=253)
    state = FSMField(max_length=12, choices=State.choices, default=State.PENDING, protected=True)
    # The reasons of the open suspension holds (``SuspensionHold``), oldest first: a copy the
    # hold services write in the same transaction as the holds, for lists and the API. The
    # holds are the record; nothing else writes this.
    suspension_reasons = models.JSONField(default=list, blank=True)
    extra_disk_mb = models.PositiveIntegerField(
        "extra disk (MB)", default=0, help_text="Bought as add-ons, on top of the plan's disk."
    )
    # Measured on the node (provisioning/usage.py); empty until first measured.
    disk_used_mb = models.PositiveIntegerField(null=True, blank=True)
    memory_used_mb = models.PositiveIntegerField(null=True, blank=True)
    bandwidth_used_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="web traffic sent this month"
    )
    # The CPU time counter of the account's cgroup at the last measurement, and the average
    # use since the one before, in % of one core.
    cpu_time_ns = models.PositiveBigIntegerField(null=True, blank=True)
    cpu_used_percent = models.PositiveIntegerField(null=True, blank=True)
    # From the account's slice on systemd nodes: its tasks now and the bytes it read and
    # wrote (counters since the slice started); empty where the node cannot tell.
    tasks_used = models.PositiveIntegerField(null=True, blank=True)
    io_read_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    io_write_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    usage_measured_at = models.DateTimeField(null=True, blank=True)
    # Mail sent through the node's submission in the last hour (each recipient counts), and
    # messages the plan's hourly limit refused in the last two days (the last one when).
    mail_sent_last_hour = models.PositiveIntegerField(null=True, blank=True)
    mail_refused_count = models.PositiveIntegerField(
        "mail refused by the limit", null=True, blank=True
    )
    mail_refused_at = models.DateTimeField("mail last refused", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A domain and a Linux user belong to one live account at a time.
            models.UniqueConstraint(
                Lower("domain"),
                condition=~Q(state__in=["terminated", "failed"]),
                name="provisioning_service_domain_live_unique",
            ),
            models.UniqueConstraint(
                fields=["node", "username"],
                condition=~Q(state__in=["terminated", "failed"]),
                name="provisioning_service_username_live_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain} ({self.username})"

    @property
    def disk_limit_mb(self) -> int:
        """The plan's disk and the extra storage bought with it."""
        return int(self.plan.disk_mb) + int(self.extra_disk_mb)

    @transition(field=state, source=State.PENDING, target=State.ACTIVE)
    def activate(self) -> None:
        pass

    @transition(field=state, source=State.PENDING, target=State.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=state, source=State.ACTIVE, target=State.SUSPENDED)
    def suspend(self) -> None:
        pass

    @transition(field=state, source=State.SUSPENDED, target=State.ACTIVE)
    def unsuspend(self) -> None:
        pass

    @transition(field=state, source=State.FAILED, target=State.PENDING)
    def retry(self) -> None:
        pass

    @transition(
        field=state, source=[State.ACTIVE, State.SUSPENDED, State.FAILED], target=State.TERMINATED
    )
    def terminate(self) -> None:
        pass


class SuspensionHold(models.Model):
    """One reason a service is suspended: placed by someone, at some time, until lifted.

    The service is suspended while any of its holds is open. Lifting a hold closes that one
    only: a payment lifts the non-payment hold and leaves an abuse hold in place.
    """

    class Reason(models.TextChoices):
        NON_PAYMENT = "non_payment", "Non-payment"
        ABUSE = "abuse", "Abuse"
        STAFF = "staff", "Staff"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="holds")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    note = models.CharField(max_length=300, blank=True)
    placed_at = models.DateTimeField(default=timezone.now)
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    placed_by_label = models.CharField(max_length=254, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_by_label = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["placed_at", "id"]
        constraints = [
            # One open hold per reason: placing it again is a no-op, not a second hold.
            models.UniqueConstraint(
                fields=["service", "reason"],
                condition=Q(lifted_at__isnull=True),
                name="provisioning_hold_one_open_per_reason",
            ),
            models.CheckConstraint(
                condition=Q(lifted_at__isnull=True) | Q(lifted_at__gte=models.F("placed_at")),
                name="provisioning_hold_lifted_after_placed",
            ),
        ]
        indexes = [models.Index(fields=["reason", "lifted_at"])]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} hold on {self.service_id}"

    @property
    def is_open(self) -> bool:
        return self.lifted_at is None


RUNNING_STATES_LIST = ["queued", "validating", "provisioning", "configuring", "rolling_back"]


class Operation(models.Model):
    """One provisioning action on a service, run as an ordered list of steps."""

    class Kind(models.TextChoices):
        CREATE = "create", "Create"
        SUSPEND = "suspend", "Suspend"
        UNSUSPEND = "unsuspend", "Unsuspend"
        TERMINATE = "terminate", "Terminate"
        CHANGE_PLAN = "change_plan", "Change plan"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Validating"
        PROVISIONING = "provisioning", "Provisioning"
        CONFIGURING = "configuring", "Configuring"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        ROLLING_BACK = "rolling_back", "Rolling back"
        ROLLED_BACK = "rolled_back", "Rolled back"

    RUNNING_STATES = ("queued", "validating", "provisioning", "configuring", "rolling_back")
    FINAL_STATES = ("completed", "failed", "rolled_back")

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="operations")
    # Not limited to Kind: later features register their own kinds (see provisioning.steps).
    kind = models.CharField(max_length=40)
    state = FSMField(max_length=14, choices=State.choices, default=State.QUEUED, protected=True)
    params = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, help_text="Why it failed or was rolled back.")
    error = models.TextField(blank=True, help_text="The technical error, for staff.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    current_step = models.PositiveSmallIntegerField(default=0)
    # Moves whenever a worker makes progress; the sweeper looks for operations where it stopped.
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    resumes = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One operation at a time per service, enforced by the database as well.
            models.UniqueConstraint(
                fields=["service"],
                condition=Q(state__in=RUNNING_STATES_LIST),
                name="provisioning_operation_one_running_per_service",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state})"

    @property
    def is_running(self) -> bool:
        return self.state in self.RUNNING_STATES

    @transition(field=state, source=State.QUEUED, target=State.VALIDATING)
    def start_validating(self) -> None:
        self.started_at = self.started_at or timezone.now()

    @transition(
        field=state, source=[State.VALIDATING, State.CONFIGURING], target=State.PROVISIONING
    )
    def start_provisioning(self) -> None:
        pass

    @transition(
        field=state, source=[State.VALIDATING, State.PROVISIONING], target=State.CONFIGURING
    )
    def start_configuring(self) -> None:
        pass

    @transition(
        field=state,
        source=[State.VALIDATING, State.PROVISIONING, State.CONFIGURING],
        target=State.COMPLETED,
    )
    def complete(self) -> None:
        self.finished_at = timezone.now()

    @transition(
        field=state,
        source=[
            State.QUEUED,
            State.VALIDATING,
            State.PROVISIONING,
            State.CONFIGURING,
            State.ROLLING_BACK,
        ],
        target=State.FAILED,
    )
    def fail(self, reason: str = "", error: str = "") -> None:
        self.reason = reason or self.reason
        self.error = error or self.error
        self.finished_at = timezone.now()

    @transition(
        field=state,
        source=[State.VALIDATING, State.PROVISIONING, State.CONFIGURING, State.FAILED],
        target=State.ROLLING_BACK,
    )
    def start_rollback(self, reason: str = "") -> None:
        self.reason = reason or self.reason
        self.finished_at = None

    @transition(field=state, source=State.ROLLING_BACK, target=State.ROLLED_BACK)
    def finish_rollback(self) -> None:
        self.finished_at = timezone.now()

    @transition(field=state, source=[State.FAILED, State.ROLLED_BACK], target=State.QUEUED)
    def requeue(self) -> None:
        self.started_at = None
        self.reason = ""
        self.error = ""
        self.finished_at = None
        self.current_step = 0


class OperationEvent(models.Model):
    """A transition of an operation: from, to, when, who, and what it was about."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=14)
    to_state = models.CharField(max_length=14)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"


class StepRun(models.Model):
    """One attempt of one step (or of its undo) of an operation, with what it ran on the node."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Direction(models.TextChoices):
        APPLY = "apply", "Apply"
        UNDO = "undo", "Undo"

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="step_runs")
    position = models.PositiveSmallIntegerField()
    step = models.CharField(max_length=60)
    direction = models.CharField(max_length=5, choices=Direction.choices, default=Direction.APPLY)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="step_runs"
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    # [{"cmd": "useradd ...", "exit": 0, "ms": 3}, ...], secrets redacted.
    commands = models.JSONField(default=list, blank=True)
    stdout_tail = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)
    resources = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    nothing_changed = models.BooleanField(
        default=False, help_text="Failed before it changed anything on the node."
    )
    node_unreachable = models.BooleanField(
        default=False,
        help_text="The node did not answer (or presented a host key that is not pinned): "
        "the step waits for it, and the try does not count against the step's retries.",
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.step} {self.direction} #{self.attempt} ({self.status})"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    def summary(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "attempt": self.attempt}


class DriftFinding(models.Model):
    """A difference between what the database says a node holds and what it really holds.

    Found by the periodic drift check (``provisioning.drift``); resolved when a later check
    no longer sees it, after a repair or a change by hand.
    """

    class Kind(models.TextChoices):
        USER = "user", "Linux user"
        POOL = "pool", "PHP-FPM pool"
        SITE = "site", "nginx server block"
        DATABASE = "database", "MariaDB database"
        ZONE = "zone", "DNS zone"
        CERTIFICATE = "certificate", "Certificate"
        MAILBOX = "mailbox", "Mailbox"

    class Problem(models.TextChoices):
        MISSING = "missing", "Missing on the node"
        UNEXPECTED = "unexpected", "On the node, unknown to the panel"

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="drift_findings")
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="drift_findings"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=255)
    problem = models.CharField(max_length=10, choices=Problem.choices)
    detail = models.TextField(blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    repair_operation = models.ForeignKey(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "kind", "name", "problem"],
                condition=Q(resolved_at__isnull=True),
                name="provisioning_drift_one_open_finding",
            )
        ]

    def __str__(self) -> str:
        return f"{self.node}: {self.get_kind_display()} {self.name} {self.get_problem_display()}"


class CronJob(models.Model):
    """A customer's cron job: a command run as the account's Linux user on a schedule.

    The row is what the customer asked for; the node gets it through a ``cron_ensure``
    operation (``provisioning/resources/cron.py``) and loses it through ``cron_remove``.
    ``state`` follows those operations: ``pending`` while one runs, ``active`` once the node
    holds the job as the row says.
    """

    class Output(models.TextChoices):
        LOGGED = "logged", "Logged (cron log in the panel)"
        MAILED = "mailed", "Mailed"

    class State(models.TextChoices):
        PENDING = "pending", "Being applied"
        ACTIVE = "active", "Applied"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="cron_jobs")
    schedule = models.CharField(max_length=100, help_text="Five cron fields, or @daily etc.")
    command = models.CharField(max_length=1000)
    output = models.CharField(max_length=10, choices=Output.choices, default=Output.LOGGED)
    mail_to = models.EmailField("mail output to", blank=True)
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "id"]

    def __str__(self) -> str:
        return f"{self.schedule} {self.command[:60]}"


LIVE_SERVICE_STATES = ("pending", "active", "suspended")


class NodeResource(models.Model):
    """One thing a service holds on a node: the panel's record of who owns what, and where.

    Steps write these rows through ``StepContext.own`` as soon as the node agent answered that
    the resource is there, with the operation (and step run) that made it. An undo removes only
    the rows its own operation created; terminate removes the rows the service holds and
    nothing else; the panel lists a service's resources from them. A name is held by one
    service at a time on a node (``present`` or ``removing`` rows are unique per node, kind and
    name), so a zone or mail domain another account holds is never touched by this one.
    """

    class Kind(models.TextChoices):
        LINUX_USER = "linux_user", "Linux user"
        LIMITS = "limits", "Resource limits"
        POOL = "pool", "PHP-FPM pool"
        SITE = "site", "nginx site"
        DATABASE = "database", "Database"
        DATABASE_USER = "database_user", "Database user"
        ZONE = "zone", "DNS zone"
        RECORD_SET = "record_set", "DNS record set"
        MAIL_DOMAIN = "mail_domain", "Mail domain"
        MAILBOX = "mailbox", "Mailbox"
        CERTIFICATE = "certificate", "Certificate"
        HTTPS = "https", "HTTPS configuration"
        SFTP = "sftp", "SFTP access"
        BACKUP = "backup", "Backup"
        CRON_JOB = "cron_job", "Cron job"

    class State(models.TextChoices):
        PRESENT = "present", "Present"
        REMOVING = "removing", "Being removed"
        GONE = "gone", "Gone"

    LIVE_STATES = ("present", "removing")

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="node_resources")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="resources")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=300)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PRESENT)
    created = models.BooleanField(
        default=True,
        help_text="The operation made it on the node (not: it was already there and was "
        "taken over). Only what its own operation made is removed by an undo.",
    )
    operation = models.ForeignKey(
        Operation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resources_made",
        help_text="The operation that made (or took over) it.",
    )
    step_run = models.ForeignKey(
        StepRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    removed_by = models.ForeignKey(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the panel shows of it (a record set's contents, a mailbox's quota...).
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                "node",
                "kind",
                Lower("name"),
                condition=Q(state__in=["present", "removing"]),
                name="provisioning_noderesource_one_live_holder",
            ),
        ]
        indexes = [models.Index(fields=["service", "state"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES
