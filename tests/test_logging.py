from __future__ import annotations

import json
import logging

import pytest
import structlog
from django.test import Client

from hosting.logging import logging_config


@pytest.mark.django_db
def test_every_response_carries_a_request_id(client: Client) -> None:
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert len(first) == 32
    assert first != second
    # A sane id from the proxy is kept; a hostile one is replaced.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="edge-12345678")["X-Request-ID"] == (
        "edge-12345678"
    )
    assert "\n" not in client.get("/healthz", HTTP_X_REQUEST_ID="x\ny" * 5)["X-Request-ID"]


def test_json_lines_carry_bound_context(capsys) -> None:
    # Given the production log configuration
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(logging_config(json=True, level="INFO"))
    try:
        # When code logs inside a bound operation context, through structlog and stdlib
        structlog.contextvars.bind_contextvars(operation_id=42, service_id=7)
        structlog.get_logger("provisioning").info("step finished", step="create_user")
        logging.getLogger("billing").warning("plain %s", "stdlib")
        structlog.contextvars.clear_contextvars()
    finally:
        dictConfig(settings.LOGGING)
    # Then each line is one JSON object with the context on it
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["event"] == "step finished"
    assert lines[0]["operation_id"] == 42
    assert lines[0]["service_id"] == 7
    assert lines[0]["step"] == "create_user"
    assert lines[1]["event"] == "plain stdlib"
    assert lines[1]["operation_id"] == 42
    assert lines[1]["level"] == "warning"
