"""Celery tasks of the support desk: thin wrappers that take ids."""

from __future__ import annotations

import smtplib

from celery import shared_task

from support import notifications, services


@shared_task(
    name="support.notify_ticket_message",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def notify_ticket_message(message_id: int) -> bool:
    """E-mail the other side about a new ticket message (once, however often it runs)."""
    return notifications.notify_message(message_id=message_id)


@shared_task(name="support.autoclose_resolved_tickets", soft_time_limit=300, time_limit=360)
def autoclose_resolved_tickets() -> int:
    """Close tickets resolved more than SUPPORT_AUTOCLOSE_DAYS ago (idempotent)."""
    return services.tickets_autoclose()
