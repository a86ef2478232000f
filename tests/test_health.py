from __future__ import annotations

import pytest
from django.test import Client, override_settings


@pytest.mark.django_db
def test_healthz_reports_database_and_broker_up(client: Client) -> None:
    # Given PostgreSQL and Redis on loopback
    # When the health endpoint is asked
    response = client.get("/healthz")
    # Then both parts answer
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "detail": "postgresql"}
    assert body["broker"]["ok"] is True
    assert "redis" in body["broker"]["detail"].lower()


@pytest.mark.django_db
def test_healthz_names_the_broker_when_it_is_down(client: Client) -> None:
    # Given a broker URL where nothing listens
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        response = client.get("/healthz")
    # Then the endpoint is unavailable and says the broker is the part that failed
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False
    assert "Connection" in body["broker"]["detail"] or "refused" in body["broker"]["detail"]
