"""A provisioning client as an outside billing system would write it."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from django.test import Client

from api.signing import sign_request


class SignedClient:
    def __init__(self, client: Client, key_id: str, secret: str) -> None:
        self.client = client
        self.key_id = key_id
        self.secret = secret

    def headers(
        self, method: str, path: str, body: bytes, *, timestamp: int | None = None,
        nonce: str | None = None, secret: str | None = None,
    ) -> dict[str, str]:  # fmt: skip
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_hex(16)
        signature = sign_request(
            secret or self.secret, method=method, path=path, timestamp=ts, nonce=nonce, body=body
        )
        return {
            "X-Hostwright-Key": self.key_id,
            "X-Hostwright-Timestamp": ts,
            "X-Hostwright-Nonce": nonce,
            "X-Hostwright-Signature": signature,
        }

    def post(self, path: str, data: Any = None, **sign: Any):
        body = json.dumps(data if data is not None else {}).encode()
        return self.client.generic(
            "POST",
            path,
            body,
            content_type="application/json",
            headers=self.headers("POST", path, body, **sign),
        )

    def get(self, path: str, **sign: Any):
        return self.client.get(path, headers=self.headers("GET", path, b"", **sign))
