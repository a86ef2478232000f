"""Two autoclose runs at the same time close each ticket once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import AuditLog
from support import services
from support.models import Ticket, TicketState


@pytest.mark.django_db(transaction=True)
def test_concurrent_autoclose_runs_close_each_ticket_once(customer, owner, department, agent):
    # given twenty tickets resolved long ago
    long_ago = timezone.now() - timedelta(days=30)
    for n in range(20):
        ticket = services.ticket_open(
            customer=customer,
            user=owner,
            department=department,
            subject=f"t{n}",
            body="b b",
            at=long_ago,
        )
        services.ticket_reply_staff(ticket=ticket, user=agent, body="ok", resolve=True, at=long_ago)
    results: list[int] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            barrier.wait()
            results.append(services.tickets_autoclose(days=7))
        finally:
            connection.close()

    # when three runs start together
    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then every ticket closed exactly once between them
    assert sum(results) == 20
    assert Ticket.objects.filter(state=TicketState.CLOSED).count() == 20
    assert AuditLog.objects.filter(detail__reason="autoclose").count() == 20
