"""Celery entry points for billing: thin wrappers around the daily run and the outbox."""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from billing import automation, services


@shared_task(
    name="billing.daily_run",
    soft_time_limit=50 * 60,
    time_limit=55 * 60,
    autoretry_for=(automation.RunLocked,),
    retry_backoff=60,
    max_retries=3,
)
def daily_run(run_date: str | None = None) -> dict[str, int]:
    """The day's billing run (a no-op when today's run is already recorded)."""
    day = dt.date.fromisoformat(run_date) if run_date else None
    return dict(automation.billing_run(today=day).counts)


@shared_task(
    name="billing.order_fulfil",
    autoretry_for=(Exception,),
    retry_backoff=30,
    max_retries=5,
    soft_time_limit=60,
    time_limit=90,
)
def order_fulfil(order_id: int) -> int | None:
    sub = services.order_fulfil(order_id=order_id)
    return sub.pk if sub else None
