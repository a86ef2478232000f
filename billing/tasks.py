"""Celery entry points for billing: the daily run, and the sweep of paid orders (the outbox)."""

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


@shared_task(name="billing.orders_sweep", soft_time_limit=240, time_limit=300)
def orders_sweep() -> int:
    """Hand paid orders that have not reached the provisioning engine yet (the outbox)."""
    return automation.orders_sweep()
