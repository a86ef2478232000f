"""Celery entry point for billing: the daily run (paid orders are swept by it too)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from billing import automation


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
