"""The Celery app: named queues, JSON only, late acks where losing a task costs a server."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hosting.settings")

app = Celery("hosting")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="default",
    task_queues=(
        Queue("default"),
        Queue("provisioning"),
        Queue("billing"),
    ),
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
app.autodiscover_tasks()
