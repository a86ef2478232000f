"""The Celery app: named queues, JSON only, late acks where losing a task costs a server."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from hosting.logging import bind_task_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hosting.settings")

app = Celery("hosting")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="default",
    # Each queue with its own binding, so a message routed to one queue reaches only it.
    task_queues=tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name)
        for name in ("default", "provisioning", "billing")
    ),
    task_default_exchange="default",
    task_default_routing_key="default",
    task_routes={
        "provisioning.*": {"queue": "provisioning"},
        "billing.*": {"queue": "billing"},
    },
    # A provisioning worker that dies mid-step must leave its task on the queue:
    # acknowledge after the task ran, take one task at a time, and requeue when
    # the worker process is lost.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=15 * 60,
    task_soft_time_limit=14 * 60,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    enable_utc=True,
)
# Celery's Django fixup closes every database connection before and after each task unless
# this is set, so each provisioning step paid for a new PostgreSQL connection and its setup
# (bench/provision: 1040 ms per account with it, 683 ms without). Connections are kept instead;
# Django's own rule (CONN_MAX_AGE, health checks) decides around each task which to drop, as it
# does around a web request.
app.conf.CELERY_DB_REUSE_MAX = 1000
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _drop_old_db_connections(task: Any = None, **_: Any) -> None:
    # A task run eagerly runs inside its caller, and maybe inside the caller's transaction:
    # its connection is not the task's to drop.
    if task is None or getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@signals.task_prerun.connect
def _bind_task_log_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    bind_task_context(task_id, getattr(task, "name", None))


@signals.setup_logging.connect
def _use_django_logging(**_: Any) -> None:
    """Let Django's LOGGING (structlog formatter) format worker logs too."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
