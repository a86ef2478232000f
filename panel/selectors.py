"""Reads for the customer panel, across apps, always scoped to one customer.

Every function that takes an id also takes the customer and raises ``Http404`` when the
row belongs to someone else: another customer's service does not exist, it is not
"forbidden". Query counts are fixed per page (annotations and prefetches, never a query per
row), which the tests assert with many services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import (
    Count,
    IntegerField,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Sum,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from accounts.models import AuditLog, Customer, Membership, User
from billing.models import ZERO, CreditEntry, Invoice, Subscription
from billing.money import money
from billing.selectors import credit_balance
from hosting.lib.units import format_mb, format_quantity
from provisioning.errors import PermanentStepError as _UnknownKind
from provisioning.models import Operation, Service, StepRun
from provisioning.steps.base import get_kind
from support.models import UNRESOLVED_STATES, Ticket

# What a customer reads for each step of the built-in operation kinds. Steps added later
# read as their name in words until they get a line here.
STEP_LABELS: dict[str, str] = {
    "validate": "Checking the server and the account details",
    "linux_user": "Creating the account's user and home folder",
    "limits": "Setting CPU, memory and process limits",
    "php_pool": "Starting PHP for the site",
    "database": "Creating the MySQL database",
    "nginx_site": "Publishing the website",
    "measure_disk": "Measuring disk usage",
    "suspend_site": "Showing the suspension page",
    "stop_pool": "Stopping PHP",
    "lock_login": "Locking file access",
    "unlock_login": "Unlocking file access",
    "start_pool": "Starting PHP again",
    "restore_site": "Putting the website back",
    "remove_site": "Removing the website",
    "remove_pool": "Removing PHP",
    "remove_database": "Removing the database",
    "remove_user": "Removing the account and its files",
    "remove_limits": "Removing the limits",
    "plan_pool": "Applying the new plan's PHP settings",
    "plan_limits": "Applying the new plan's limits",
    "dns_zone": "Creating the domain's DNS zone",
    "verify_dns": "Checking that the nameserver answers",
    "mail_domain": "Setting up mail for the domain",
    "remove_dns_zone": "Removing the DNS zone",
    "remove_mail_domain": "Removing mail for the domain",
    "dns_records": "Saving the DNS records",
    "database_limit": "Checking the plan's database limit",
    "customer_database": "Creating the database",
    "customer_database_user": "Creating the database user",
    "drop_customer_database": "Deleting the database",
    "customer_database_password": "Changing the database password",
    "mailbox_limit": "Checking the plan's mailbox limit",
    "mailbox": "Creating the mailbox",
    "delete_mailbox": "Deleting the mailbox",
    "mailbox_password": "Changing the mailbox password",
    "forwarder": "Saving the forwarder",
    "delete_forwarder": "Deleting the forwarder",
    "certificate_precheck": "Checking that the domain points here",
    "certificate": "Getting the certificate",
    "https": "Turning on HTTPS",
    "backup": "Backing up files and databases, then checking the backup",
    "restore": "Restoring files and databases",
    "wordpress": "Installing WordPress",
    "sftp": "Turning SFTP on",
    "sftp_off": "Turning SFTP off",
    "remove_sftp": "Removing SFTP access",
    "repair_linux_user": "Checking the account's user and home folder",
    "repair_limits": "Checking the limits",
    "repair_php_pool": "Checking PHP for the site",
    "repair_database": "Checking the MySQL database",
    "repair_nginx_site": "Checking the website's configuration",
}

KIND_LABELS: dict[str, str] = {
    "create": "Setting up your hosting",
    "suspend": "Suspending",
    "unsuspend": "Unsuspending",
    "terminate": "Removing the account",
    "change_plan": "Changing plan",
    "dns_records": "Updating DNS records",
    "database_create": "Creating a database",
    "database_delete": "Deleting a database",
    "database_password": "Changing a database password",
    "mailbox_create": "Creating a mailbox",
    "mailbox_delete": "Deleting a mailbox",
    "mailbox_password": "Changing a mailbox password",
    "forwarder_set": "Saving a mail forwarder",
    "forwarder_delete": "Deleting a mail forwarder",
    "certificate_issue": "Getting an HTTPS certificate",
    "backup_create": "Backing up files and databases",
    "backup_restore": "Restoring a backup",
    "wordpress_install": "Installing WordPress",
    "sftp_enable": "Turning SFTP on",
    "sftp_disable": "Turning SFTP off",
    "repair": "Repairing the account on its server",
}

# Reasons a service is suspended, as written by billing and staff, in the customer's words.
SUSPENSION_LABELS: dict[str, str] = {
    "non_payment": "an invoice is overdue: pay it and the site comes back at once",
    "overdue": "an invoice is overdue: pay it and the site comes back at once",
    "billing": "an invoice is overdue: pay it and the site comes back at once",
    "abuse": "a report of abuse is being looked at: support will contact you",
}


def step_label(name: str) -> str:
    return STEP_LABELS.get(name) or name.replace("_", " ").capitalize()


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind) or kind.replace("_", " ").capitalize()


def suspension_label(reason: str) -> str:
    return SUSPENSION_LABELS.get(reason.lower(), reason)


def customer_or_404(*, user: User) -> Customer:
    """The customer the signed-in user acts for; a user without one sees nothing."""
    customer = (
        Customer.objects.filter(memberships__user=user).order_by("memberships__id").first()
        if user.is_authenticated
        else None
    )
    if customer is None:
        raise Http404("no customer account")
    return customer


def is_owner(*, customer: Customer, user: User) -> bool:
    return Membership.objects.filter(
        customer=customer, user=user, role=Membership.Role.OWNER
    ).exists()


# --- the dashboard ----------------------------------------------------------------------------


def _latest_operation(field_name: str, kind: str = "") -> Subquery:
    latest = Operation.objects.filter(service=OuterRef("pk")).order_by("-created_at", "-id")
    if kind:
        latest = latest.filter(kind=kind)
    return Subquery(latest.values(field_name)[:1])


def services_for_customer(*, customer: Customer) -> QuerySet[Service]:
    """The customer's services that still exist, each with its latest operation's kind and
    state and its latest certificate attempt's state (what the dashboard's notices need)."""
    return (
        Service.objects.filter(customer=customer)
        .exclude(state=Service.State.TERMINATED)
        .select_related("plan", "plan__product")
        .annotate(
            last_op_kind=_latest_operation("kind"),
            last_op_state=_latest_operation("state"),
            last_cert_state=_latest_operation("state", kind="certificate_issue"),
        )
        .order_by("-created_at", "-id")
    )


def customer_for_dashboard(*, user: User) -> Customer | None:
    """The customer the user acts for (as ``customer_for_user``), with the dashboard's two
    counters (open tickets, credit in the customer's currency) read in the same query."""
    if not user.is_authenticated:
        return None
    tickets = (
        Ticket.objects.filter(customer=OuterRef("pk"), state__in=UNRESOLVED_STATES)
        .order_by()
        .values("customer")
        .annotate(n=Count("pk"))
        .values("n")
    )
    credit = (
        CreditEntry.objects.filter(customer=OuterRef("pk"), currency=OuterRef("currency"))
        .order_by()
        .values("customer")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return (
        Customer.objects.filter(memberships__user=user)
        .annotate(
            open_tickets_count=Coalesce(Subquery(tickets), 0, output_field=IntegerField()),
            credit_total=Subquery(credit),
        )
        .order_by("memberships__id")
        .first()
    )


@dataclass
class Notice:
    level: str  # "bad", "warn" or "info"
    title: str
    text: str
    link: str = ""


@dataclass
class Dashboard:
    customer: Customer
    services: list[Service]
    unpaid: list[Invoice]
    open_tickets: int
    credit: Any
    notices: list[Notice] = field(default_factory=list)
    working: set[int] = field(default_factory=set)


def dashboard(*, customer: Customer) -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries."""
    from django.urls import reverse

    services = list(services_for_customer(customer=customer))
    unpaid = list(
        Invoice.objects.filter(customer=customer, state__in=Invoice.OPEN_STATES).order_by(
            "due_date", "id"
        )
    )
    if hasattr(customer, "open_tickets_count"):  # read with the customer (customer_for_dashboard)
        open_tickets: int = customer.open_tickets_count
        credit = money(getattr(customer, "credit_total", None) or ZERO, customer.currency)
    else:
        open_tickets = Ticket.objects.filter(customer=customer, state__in=UNRESOLVED_STATES).count()
        credit = credit_balance(customer=customer, currency=customer.currency)
    board = Dashboard(
        customer=customer,
        services=services,
        unpaid=unpaid,
        open_tickets=open_tickets,
        credit=credit,
    )
    for service in services:
        link = reverse("panel:service", args=[service.pk])
        if service.state == Service.State.SUSPENDED:
            reasons = service.suspension_reasons or []
            why = "; ".join(suspension_label(r) for r in reasons) or "no reason was given"
            board.notices.append(
                Notice("bad", f"{service.domain} is suspended", f"Because {why}.", link)
            )
        last_state = getattr(service, "last_op_state", None)
        last_kind = getattr(service, "last_op_kind", "") or ""
        if last_state in (Operation.State.FAILED, Operation.State.ROLLED_BACK) and (
            last_kind != "certificate_issue"  # has a notice of its own below
        ):
            board.notices.append(
                Notice(
                    "warn",
                    f"{kind_label(last_kind)} {service.domain} did not finish",
                    "Everything it had started was undone. Support can see what happened; "
                    "open a ticket if you need help."
                    if last_state == Operation.State.ROLLED_BACK
                    else "It stopped part-way. Support can see what happened and will finish "
                    "or clean it up; open a ticket if it is urgent.",
                    link,
                )
            )
        elif last_state in Operation.RUNNING_STATES:
            board.working.add(service.pk)
            board.notices.append(
                Notice(
                    "info",
                    f"{kind_label(last_kind)}: {service.domain}",
                    "This is happening now. Follow it step by step on the service page.",
                    link,
                )
            )
        cert_state = getattr(service, "last_cert_state", None)
        if cert_state in (Operation.State.FAILED, Operation.State.ROLLED_BACK) and (
            service.state == Service.State.ACTIVE
        ):
            board.notices.append(
                Notice(
                    "warn",
                    f"No HTTPS certificate for {service.domain}",
                    "The last attempt to get one did not succeed. Check that the domain "
                    "points to us, then try again from the service page.",
                    link,
                )
            )
    overdue = [i for i in unpaid if i.state == Invoice.State.OVERDUE]
    if overdue:
        board.notices.append(
            Notice(
                "bad",
                f"{len(overdue)} overdue invoice{'s' if len(overdue) > 1 else ''}",
                "Overdue invoices lead to suspension after the grace period.",
                reverse("billing:invoices"),
            )
        )
    return board


# --- the service page -------------------------------------------------------------------------


def service_for_user(*, user: User, service_id: int) -> Service:
    """One of the services of the customer the user acts for (``customer_or_404``'s), with
    that customer as ``service.customer``, in one query; 404 for anything else."""
    acting_for = Membership.objects.filter(user=user).order_by("id").values("customer_id")[:1]
    service = (
        Service.objects.filter(pk=service_id, customer_id=Subquery(acting_for))
        .exclude(state=Service.State.TERMINATED)
        .select_related("customer", "plan", "plan__product", "node", "ip")
        .first()
        if user.is_authenticated
        else None
    )
    if service is None:
        raise Http404("No such service")
    return service


def service_for_customer(*, customer: Customer, service_id: int) -> Service:
    service = (
        Service.objects.filter(customer=customer, pk=service_id)
        .exclude(state=Service.State.TERMINATED)
        .select_related("plan", "plan__product", "node", "ip")
        .first()
    )
    if service is None:
        raise Http404("No such service")
    return service


def operations_for_service(*, service: Service, limit: int = 10) -> list[Operation]:
    return list(Operation.objects.filter(service=service).order_by("-created_at", "-id")[:limit])


def _runs_prefetch() -> Prefetch:
    return Prefetch(
        "step_runs", queryset=StepRun.objects.order_by("started_at", "id"), to_attr="runs"
    )


def operation_for_service(*, service: Service, operation_id: int) -> Operation:
    operation = (
        Operation.objects.filter(service=service, pk=operation_id)
        .prefetch_related(_runs_prefetch())
        .first()
    )
    if operation is None:
        raise Http404("No such operation")
    return operation


def operation_with_runs(*, operation: Operation) -> Operation:
    """The operation (one of ``operations_for_service``) with its step runs read, for
    ``operation_progress``."""
    prefetch_related_objects([operation], _runs_prefetch())
    return operation


@dataclass
class StepLine:
    name: str
    label: str
    status: str  # waiting, running, done, failed, undone, skipped
    attempt: int = 1
    error: str = ""


@dataclass
class Progress:
    operation: Operation
    title: str
    steps: list[StepLine]
    done: int
    total: int
    finished: bool
    failed: bool
    failed_step: str = ""

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100


def operation_progress(*, operation: Operation) -> Progress:
    """Each step of the operation with where it stands, from its kind and its step runs."""
    runs: list[StepRun] | None = getattr(operation, "runs", None)
    if runs is None:
        runs = list(operation.step_runs.order_by("started_at", "id"))
    try:
        names = [s.name for s in get_kind(operation.kind).steps]
    except _UnknownKind:
        names = []
    for run in runs:
        if run.step not in names:
            names.append(run.step)
    latest_apply: dict[str, StepRun] = {}
    undone: set[str] = set()
    for run in runs:
        if run.direction == StepRun.Direction.APPLY:
            latest_apply[run.step] = run
        elif run.status == StepRun.Status.SUCCEEDED:
            undone.add(run.step)
    lines: list[StepLine] = []
    failed_step = ""
    for name in names:
        found = latest_apply.get(name)
        status = "waiting"
        if found is not None:
            status = {
                StepRun.Status.RUNNING: "running",
                StepRun.Status.SUCCEEDED: "done",
                StepRun.Status.FAILED: "failed",
                StepRun.Status.SKIPPED: "skipped",
            }[StepRun.Status(found.status)]
            if name in undone:
                status = "undone"
            if found.status == StepRun.Status.FAILED:
                failed_step = name
        lines.append(
            StepLine(
                name=name,
                label=step_label(name),
                status=status,
                attempt=found.attempt if found else 1,
            )
        )
    finished = operation.state in Operation.FINAL_STATES
    failed = operation.state in (Operation.State.FAILED, Operation.State.ROLLED_BACK)
    done = sum(1 for line in lines if line.status in ("done", "skipped"))
    return Progress(
        operation=operation,
        title=kind_label(operation.kind),
        steps=lines,
        done=len(lines) if operation.state == Operation.State.COMPLETED else done,
        total=len(lines),
        finished=finished,
        failed=failed,
        failed_step=step_label(failed_step) if failed_step else "",
    )


def failure_in_words(progress: Progress) -> str:
    """What a customer reads when an operation failed: what, why, and what state things are in.

    The why is the operation's reason, which the engine keeps in the customer's words (the
    commands and their output are in the admin's step record only).
    """
    op = progress.operation
    where = (
        f" while {progress.failed_step[0].lower()}{progress.failed_step[1:]}"
        if (progress.failed_step)
        else ""
    )
    why = op.reason.strip()
    if why and not why.endswith((".", "!", "?")):
        why = f"{why}."
    if op.state == Operation.State.ROLLED_BACK:
        if "undone" not in why:
            why = f"{why} Everything it had done was undone.".strip()
        return (
            f"{progress.title} stopped{where}. {why} Nothing is left half-finished; open a "
            "ticket if you need help."
        )
    why = why.replace("Everything it had done was undone.", "").strip()
    return (
        f"{progress.title} stopped{where}. {why} It could not be undone automatically: "
        "support can see what happened and will finish or clean it up; open a ticket if it "
        "is urgent."
    ).replace(".  ", ". ")


@dataclass
class Usage:
    label: str
    used: float | None
    limit: float
    unit: str
    # How ``used`` reads when the plan's unit is too coarse for it ("12 MB" of 100 GB).
    used_text: str = ""

    @property
    def percent(self) -> int | None:
        if self.used is None or not self.limit:
            return None
        return min(100, round(100 * self.used / self.limit))

    @property
    def level(self) -> str:
        pct = self.percent or 0
        return "bad" if pct >= 90 else "warn" if pct >= 75 else "ok"

    @property
    def text(self) -> str:
        """``12 MB of 5,000 MB``, or ``not measured yet`` (never a limit alone)."""
        limit = format_quantity(self.limit, self.unit)
        if self.used is None:
            return f"not measured yet · {limit} included"
        return f"{self.used_text or format_quantity(self.used, self.unit)} of {limit}"


def sftp_path(*, service: Service, home_relative: str = "") -> str:
    """A path in the account's home as its SFTP session shows it (the one place that knows).

    Today's SFTP jail is /home, where a session starts in /<account>: the web root reads
    /<account>/public_html. When the jail becomes the account's own home this returns
    /public_html, and every page follows.
    """
    base = f"/{service.username}"
    rel = home_relative.strip("/")
    return f"{base}/{rel}" if rel else base


@dataclass(frozen=True)
class DatabaseLine:
    name: str  # as MariaDB and the customer's tools know it
    user: str
    note: str = ""
    short: str = ""  # the name the delete form takes; empty: not deletable here


def service_databases(*, service: Service, resources: Any) -> list[DatabaseLine]:
    """Every database of the account under its real name: the one made with the account,
    WordPress's, and those the customer created."""
    u = service.username
    lines = []
    if service.plan.databases >= 1:
        lines.append(
            DatabaseLine(f"{u}_main", u, "made with the account; its login is in ~/.my.cnf")
        )
    if resources.wordpress:
        lines.append(DatabaseLine(f"{u}_wp", f"{u}_wp", "used by WordPress"))
    for name, db_user in resources.databases.items():
        if name == "wp" and resources.wordpress:
            continue
        lines.append(DatabaseLine(f"{u}_{name}", f"{u}_{db_user or name}", short=name))
    return lines


def service_usage(*, service: Service) -> list[Usage]:
    """Usage against the plan's limits. Only measured values are shown as used."""
    plan = service.plan
    traffic = service.bandwidth_used_bytes
    traffic_gb = None if traffic is None else round(traffic / 2**30, 2)
    return [
        Usage("Disk", service.disk_used_mb, plan.disk_mb + service.extra_disk_mb, "MB"),
        Usage(
            "Traffic this month",
            traffic_gb,
            plan.bandwidth_gb,
            "GB",
            used_text=format_mb(traffic / 2**20) if traffic is not None and traffic < 2**30 else "",
        ),
        Usage("Memory in use", service.memory_used_mb, plan.memory_mb, "MB"),
        Usage("CPU, recent average", service.cpu_used_percent, plan.cpu_percent, "% of a core"),
        # Counted from the account's slice on systemd nodes (unknown elsewhere).
        Usage("Processes and threads", service.tasks_used, plan.processes, "tasks"),
    ]


def subscription_for_service(*, service: Service) -> Subscription | None:
    return Subscription.objects.filter(service=service).select_related("plan").first()


# --- account activity -------------------------------------------------------------------------

# Audit actions a customer sees on their account page.
CUSTOMER_VISIBLE_ACTIONS = (
    "panel.impersonation.started",
    "panel.impersonation.ended",
    "customer.profile_updated",
    "customer.signup",
)


def account_activity(*, customer: Customer, limit: int = 50) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(customer=customer, action__in=CUSTOMER_VISIBLE_ACTIONS)[:limit]


# --- the staff customer page ------------------------------------------------------------------


def customer_overview(*, customer: Customer, limit: int = 20) -> dict[str, Any]:
    """Everything of a customer at once, for the admin's customer page."""
    from billing.models import Payment

    return {
        "overview_services": list(
            Service.objects.filter(customer=customer)
            .select_related("plan", "plan__product", "node")
            .order_by("-created_at", "-id")[:50]
        ),
        "overview_operations": list(
            Operation.objects.filter(service__customer=customer)
            .select_related("service")
            .order_by("-created_at", "-id")[:limit]
        ),
        "overview_invoices": list(
            Invoice.objects.filter(customer=customer)
            .exclude(state=Invoice.State.DRAFT)
            .order_by("-issue_date", "-id")[:limit]
        ),
        "overview_payments": list(
            Payment.objects.filter(customer=customer)
            .select_related("invoice")
            .order_by("-created_at", "-id")[:limit]
        ),
        "overview_tickets": list(
            Ticket.objects.filter(customer=customer)
            .select_related("department")
            .order_by("-updated_at", "-id")[:limit]
        ),
        "overview_audit": list(
            AuditLog.objects.filter(customer=customer).order_by("-at", "-id")[: limit + 10]
        ),
        "overview_credit": credit_balance(customer=customer, currency=customer.currency),
        "overview_members": list(
            Membership.objects.filter(customer=customer).select_related("user").order_by("id")
        ),
    }


# --- plan changes -----------------------------------------------------------------------------


@dataclass
class PlanChangeQuote:
    """What moving to ``plan`` costs today: the same day-based proration billing applies."""

    plan: Any
    new_amount: Any
    days_left: int
    term_days: int
    unused: Any
    new_part: Any
    net: Any
    tax_rate: Any
    tax: Any
    error: str = ""

    @property
    def total_due(self) -> Any:
        return self.net + self.tax if self.net > 0 else 0

    # What a downgrade gives back through credit notes, tax included (see
    # billing.services.subscriptions.term_credit_plan).
    credit: Any = 0


def plan_change_quotes(*, subscription: Subscription, today: Any = None) -> list[PlanChangeQuote]:
    """Each other active plan with its prorated price, as ``subscription_change_plan`` will
    compute it (days left of the term on the new price, minus the unused part of the old)."""
    from decimal import Decimal

    from django.utils import timezone

    from billing.errors import BillingError
    from billing.models import Plan
    from billing.money import money
    from billing.selectors import addon_prices, price_for, running_term
    from billing.services.subscriptions import term_credit_plan
    from billing.taxes import tax_decide

    today = today or timezone.localdate()
    sub = subscription
    rate = tax_decide(customer=sub.customer).rate
    addons = list(sub.addons.all())
    term_start, term_end = running_term(
        start=sub.period_start, end=sub.next_due_date, cycle=sub.cycle, today=today
    )
    term_days = (term_end - term_start).days or 1
    days_left = max(0, min(term_days, (term_end - today).days))
    unused = money(sub.amount * days_left / term_days, sub.currency)
    quotes = []
    plans = Plan.objects.filter(is_active=True).exclude(pk=sub.plan_id).select_related("product")
    for plan in plans:
        try:
            extra = sum(
                addon_prices(addons=addons, cycle=sub.cycle, currency=sub.currency).values(),
                Decimal("0"),
            )
            new_amount = price_for(plan=plan, cycle=sub.cycle, currency=sub.currency) + extra
        except BillingError:
            continue  # not sold in this currency and cycle
        new_part = money(new_amount * days_left / term_days, sub.currency)
        net = new_part - unused
        quotes.append(
            PlanChangeQuote(
                plan=plan,
                new_amount=new_amount,
                days_left=days_left,
                term_days=term_days,
                unused=unused,
                new_part=new_part,
                net=net,
                tax_rate=rate,
                tax=money(net * rate / 100, sub.currency) if net > 0 else Decimal("0.00"),
                credit=(
                    sum(
                        (g for _i, _d, g in term_credit_plan(sub=sub, net=-net, today=today)),
                        Decimal("0.00"),
                    )
                    if net < 0
                    else 0
                ),
            )
        )
    return quotes
