"""What each hosting account uses on its node: disk, memory, this month's web traffic, and
the mail it sent in the last hour against its plan's limit.

The nodes' kernels may have no disk quotas, so disk usage is measured (``du``) and shown
against the plan. Memory, CPU time, tasks and IO are the account's own counters: on systemd
nodes its slice's (``systemctl show`` of ``user-<uid>.slice``, where its PHP-FPM, cron jobs and
SFTP sessions run), elsewhere its cgroups'. Memory is what the account holds now (its
processes and their page cache). Traffic is what nginx sent for the account's site this
month, added up from its access log and the log rotated last. One script per node answers
for all of its live accounts in one round trip (the node agent's ``usage.measure``), so the
cost is one SSH exchange per node however many accounts it carries.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from provisioning import nodes, ssh, validators
from provisioning.errors import StepError
from provisioning.models import Node, Service

log = logging.getLogger(__name__)

# nginx writes English month names whatever the locale: [01/Dec/2026:10:00:00 +0000].
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Measured:
    disk_mb: int | None
    memory_mb: int | None
    traffic_bytes: int
    cpu_ns: int | None
    tasks: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None


def nginx_month(now: dt.datetime | None = None) -> str:
    """This month as nginx's access log writes it: ``Dec/2026``."""
    now = now or timezone.localtime()
    return f"{MONTHS[now.month - 1]}/{now.year}"


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_usage(accounts: dict[str, Any]) -> dict[str, Measured]:
    """The agent's figures, by account name; entries that do not read as figures are left out."""
    found: dict[str, Measured] = {}
    for user, figures in accounts.items():
        if not isinstance(figures, dict) or _count(figures.get("traffic_bytes")) is None:
            continue
        memory_bytes = _count(figures.get("memory_bytes"))
        found[user] = Measured(
            disk_mb=_count(figures.get("disk_mb")),
            memory_mb=None if memory_bytes is None else round(memory_bytes / 2**20),
            traffic_bytes=int(figures["traffic_bytes"]),
            cpu_ns=_count(figures.get("cpu_ns")),
            tasks=_count(figures.get("tasks")),
            io_read_bytes=_count(figures.get("io_read_bytes")),
            io_write_bytes=_count(figures.get("io_write_bytes")),
        )
    return found


@dataclass(frozen=True)
class MailSending:
    sent_last_hour: int
    refused: int  # messages refused by the limit in the last two days
    last_refused: dt.datetime | None


def parse_mail_sending(accounts: object) -> dict[str, MailSending]:
    """The policy service's report (the agent's ``mail.sending.report``), by account name;
    entries that do not read as a report are left out."""
    found: dict[str, MailSending] = {}
    for entry in accounts if isinstance(accounts, list) else []:
        try:
            account = str(entry["account"])
            sent, refused = int(entry.get("sent", 0)), int(entry.get("refused", 0))
            last = entry.get("last_refused")
            last_at = dt.datetime.fromtimestamp(int(last), tz=dt.UTC) if last else None
        except (ValueError, KeyError, TypeError, OverflowError):
            continue
        found[account] = MailSending(sent_last_hour=sent, refused=refused, last_refused=last_at)
    return found


def mail_sending(node: Node) -> dict[str, MailSending] | None:
    """The node's sending report through its agent (empty on a node without mail); None when
    the node could not give it, so the figures measured before stay as they were."""
    result = ssh.call(
        nodes.node_target(node),
        [ssh.action("mail.sending.report")],
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
    )
    failure = result.failure()
    if failure is not None:
        log.warning(
            "reading the mail sending report failed on %s: %s", node.name, failure[1].get("message")
        )
        return None
    return parse_mail_sending(result.results[0].data.get("accounts"))


USAGE_FIELDS = [
    "mail_sent_last_hour",
    "mail_refused_count",
    "mail_refused_at",
    "disk_used_mb",
    "memory_used_mb",
    "bandwidth_used_bytes",
    "cpu_time_ns",
    "cpu_used_percent",
    "tasks_used",
    "io_read_bytes",
    "io_write_bytes",
    "usage_measured_at",
]


def cpu_percent(*, before: int | None, after: int | None, seconds: float) -> int | None:
    """Average CPU use between two readings of the account's counter, in % of one core.

    Unknown after the first reading, and when the counter went back (the account's cgroup
    was made anew).
    """
    if before is None or after is None or seconds <= 0 or after < before:
        return None
    return round((after - before) / (seconds * 1e9) * 100)


def usage_collect_node(*, node_id: int) -> int:
    """Measure every live account of one node and store the figures. Returns how many."""
    node = Node.objects.get(pk=node_id)
    live = list(
        Service.objects.filter(
            node=node, state__in=[Service.State.ACTIVE, Service.State.SUSPENDED]
        ).exclude(username="")
    )
    if not live:
        return 0
    # Names come from the database but are validated again before they reach the node.
    users = [validators.validate_username(s.username) for s in live]
    result = ssh.call(
        nodes.node_target(node),
        [ssh.action("usage.measure", users=users, month=nginx_month())],
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
    )
    failure = result.failure()
    if failure is not None:
        raise StepError(f"measuring usage failed on {node.name}: {failure[1].get('message')}")
    measured = parse_usage(result.results[0].data.get("accounts") or {})
    sending = mail_sending(node)
    now = timezone.now()
    changed = []
    for service in live:
        figures = measured.get(service.username)
        if figures is None:
            continue
        if figures.disk_mb is not None:
            service.disk_used_mb = figures.disk_mb
        service.memory_used_mb = figures.memory_mb
        service.bandwidth_used_bytes = figures.traffic_bytes
        service.cpu_used_percent = cpu_percent(
            before=service.cpu_time_ns,
            after=figures.cpu_ns,
            seconds=(now - service.usage_measured_at).total_seconds()
            if service.usage_measured_at
            else 0,
        )
        service.cpu_time_ns = figures.cpu_ns
        service.tasks_used = figures.tasks
        service.io_read_bytes = figures.io_read_bytes
        service.io_write_bytes = figures.io_write_bytes
        if sending is not None:
            mail = sending.get(service.username)
            service.mail_sent_last_hour = mail.sent_last_hour if mail else 0
            service.mail_refused_count = mail.refused if mail else 0
            service.mail_refused_at = mail.last_refused if mail else None
        service.usage_measured_at = now
        changed.append(service)
    Service.objects.bulk_update(changed, USAGE_FIELDS, batch_size=500)
    return len(changed)


def usage_collect_all() -> dict[str, int | str]:
    """Measure the accounts of every active node; a node that fails is reported, not fatal."""
    return nodes.each_active_node(
        lambda node: usage_collect_node(node_id=node.pk), what="measuring usage"
    )
