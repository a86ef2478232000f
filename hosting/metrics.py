"""Prometheus metrics, read from the database (and the broker) at scrape time.

Web processes, workers and beat are separate processes, often on separate machines; counting
in each process's memory would need shared storage and would lose counts on restart. The rows
this system writes anyway (operations, steps, invoices, tickets, deliveries) are the counts, so
a scrape asks PostgreSQL. Queries are aggregates over indexed columns.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
PAID_TO_LIVE_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
QUEUES = ("provisioning", "billing", "default")


def _model(label: str) -> Any:
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _histogram(
    name: str, doc: str, labels: list[str], rows: list[tuple[Any, ...]], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    """rows: (label values..., count, sum, count<=b1, count<=b2, ...)."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    width = len(labels)
    for row in rows:
        label_values = [str(v) for v in row[:width]]
        count, total = int(row[width]), float(row[width + 1] or 0)
        cumulative = [(str(b), int(c)) for b, c in zip(buckets, row[width + 2 :], strict=True)]
        family.add_metric(label_values, [*cumulative, ("+Inf", count)], sum_value=total)
    return family


def _bucket_sql(expr: str, buckets: tuple[float, ...]) -> str:
    return ", ".join(f"COUNT(*) FILTER (WHERE {expr} <= {b})" for b in buckets)


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        for section in (self._operations, self._nodes, self._queues, self._billing,
                        self._tickets, self._webhooks):  # fmt: skip
            try:
                yield from section()
            except Exception:
                # One broken section must not hide the others (or fail the scrape).
                log.exception("metrics section %s failed", section.__name__)

    def _operations(self) -> Iterator[Metric]:
        operation = _model("provisioning.Operation")
        step_run = _model("provisioning.StepRun")
        if operation is None:
            return
        family = CounterMetricFamily(
            "hostwright_operations", "Provisioning operations by kind and state.",
            labels=["kind", "state"],
        )  # fmt: skip
        rows = operation.objects.values_list("kind", "state").order_by()
        counts: dict[tuple[str, str], int] = {}
        for kind, state in rows.iterator():
            counts[(kind, state)] = counts.get((kind, state), 0) + 1
        for (kind, state), n in sorted(counts.items()):
            family.add_metric([kind, state], n)
        yield family
        if step_run is None or connection.vendor != "postgresql":
            return
        seconds = "EXTRACT(EPOCH FROM (finished_at - started_at))"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT step, direction, COUNT(*), SUM({seconds}), "  # noqa: S608
                f"{_bucket_sql(seconds, STEP_BUCKETS)} FROM {step_run._meta.db_table} "
                "WHERE finished_at IS NOT NULL GROUP BY step, direction ORDER BY step, direction"
            )
            rows = cursor.fetchall()
        yield _histogram(
            "hostwright_step_duration_seconds", "Time each provisioning step took on the node.",
            ["step", "direction"], rows, STEP_BUCKETS,
        )  # fmt: skip

    def _nodes(self) -> Iterator[Metric]:
        node = _model("provisioning.Node")
        if node is None:
            return
        up = GaugeMetricFamily(
            "hostwright_node_up", "1 when the node's last health check passed.", labels=["node"]
        )
        status = GaugeMetricFamily(
            "hostwright_node_status", "The node's status (1 for the current one).",
            labels=["node", "status"],
        )  # fmt: skip
        accounts = GaugeMetricFamily(
            "hostwright_node_accounts", "Live accounts on the node.", labels=["node"]
        )
        service = _model("provisioning.Service")
        live: dict[int, int] = {}
        if service is not None:
            for node_id in (
                service.objects.exclude(state__in=["terminated", "failed"])
                .values_list("node_id", flat=True)
                .iterator()
            ):
                live[node_id] = live.get(node_id, 0) + 1
        for n in node.objects.all():
            health = n.health or {}
            up.add_metric([n.name], 1.0 if health.get("ok") else 0.0)
            for choice in node.Status.values:
                status.add_metric([n.name, choice], 1.0 if n.status == choice else 0.0)
            accounts.add_metric([n.name], live.get(n.pk, 0))
        yield from (up, status, accounts)

    def _queues(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "hostwright_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"]
        )
        url = settings.CELERY_BROKER_URL
        if url.startswith("redis://"):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2)
            for queue in QUEUES:
                # kombu keeps priority levels as separate lists: "<queue>", "<queue>\x06\x16N".
                keys = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
                family.add_metric([queue], sum(int(client.llen(k)) for k in keys))
        yield family

    def _billing(self) -> Iterator[Metric]:
        yield from _counts(
            CounterMetricFamily,
            "hostwright_invoices",
            "Invoices by state.",
            "billing.Invoice",
            "state",
        )
        yield from _counts(
            CounterMetricFamily,
            "hostwright_payments",
            "Payments recorded, by gateway.",
            "billing.Payment",
            "gateway",
        )
        yield from _counts(
            CounterMetricFamily,
            "hostwright_billing_runs",
            "Daily billing runs by status.",
            "billing.BillingRun",
            "status",
        )
        yield from self._paid_to_live()

    def _paid_to_live(self) -> Iterator[Metric]:
        """From an order being paid to its service's create operation completing."""
        order, subscription = _model("billing.Order"), _model("billing.Subscription")
        operation = _model("provisioning.Operation")
        if None in (order, subscription, operation) or connection.vendor != "postgresql":
            return
        order_fields = {f.name for f in order._meta.get_fields()}
        sub_fields = {f.name for f in subscription._meta.get_fields()}
        if (
            "paid_at" not in order_fields
            or "service" not in sub_fields
            or "order" not in sub_fields
        ):
            return
        seconds = "EXTRACT(EPOCH FROM (op.finished_at - o.paid_at))"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*), SUM({seconds}), {_bucket_sql(seconds, PAID_TO_LIVE_BUCKETS)} "  # noqa: S608
                f"FROM {order._meta.db_table} o "
                f"JOIN {subscription._meta.db_table} s ON s.order_id = o.id "
                f"JOIN {operation._meta.db_table} op ON op.service_id = s.service_id "
                "AND op.kind = 'create' AND op.state = 'completed' "
                "WHERE o.paid_at IS NOT NULL AND op.finished_at IS NOT NULL"
            )
            rows = cursor.fetchall()
        yield _histogram(
            "hostwright_paid_to_live_seconds", "From payment to a live hosting account.",
            [], rows, PAID_TO_LIVE_BUCKETS,
        )  # fmt: skip

    def _tickets(self) -> Iterator[Metric]:
        ticket = _model("support.Ticket")
        if ticket is None:
            return
        yield from _counts(
            GaugeMetricFamily, "hostwright_tickets", "Tickets by state.", "support.Ticket", "state"
        )
        if connection.vendor != "postgresql":
            return
        seconds = "EXTRACT(EPOCH FROM (first_response_at - created_at))"
        buckets = (300.0, 900.0, 3600.0, 4 * 3600.0, 8 * 3600.0, 24 * 3600.0, 72 * 3600.0)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT priority, COUNT(*), SUM({seconds}), {_bucket_sql(seconds, buckets)} "  # noqa: S608
                f"FROM {ticket._meta.db_table} WHERE first_response_at IS NOT NULL "
                "GROUP BY priority ORDER BY priority"
            )
            rows = cursor.fetchall()
        yield _histogram(
            "hostwright_ticket_first_response_seconds", "Time to the first staff reply.",
            ["priority"], rows, buckets,
        )  # fmt: skip

    def _webhooks(self) -> Iterator[Metric]:
        yield from _counts(
            GaugeMetricFamily,
            "hostwright_webhook_deliveries",
            "Outgoing webhook deliveries by status.",
            "api.WebhookDelivery",
            "status",
        )


def _counts(
    family_class: Any, name: str, doc: str, model_label: str, field: str
) -> Iterator[Metric]:
    """One metric family: the model's rows counted by one field (nothing if the model is absent)."""
    from django.db.models import Count

    model = _model(model_label)
    if model is None:
        return
    family = family_class(name, doc, labels=[field])
    rows = model.objects.order_by().values_list(field).annotate(n=Count("pk"))
    for value, n in rows:
        family.add_metric([str(value)], int(n))
    yield family


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip(), token)
    # A staff session counts only once it passed the second factor, as for the admin.
    from accounts.middleware import staff_session_verified

    return staff_session_verified(request)


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; a bearer token (METRICS_TOKEN) or a staff session that passed
    the second factor."""
    if not _authorized(request):
        response = HttpResponse("metrics need a token\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
