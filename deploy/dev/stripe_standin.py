#!/usr/bin/env python3
"""A local stand-in for the part of Stripe's HTTP API that Hostwright uses.

It is NOT Stripe: a small in-memory HTTP server, standard library only, that answers the
official ``stripe`` SDK when ``stripe.api_base`` points at it (``STRIPE_API_BASE``), so tests and
the demo take card payments without a network or an account. What it covers:

- customers; Checkout Sessions in ``payment`` and ``setup`` mode with a hosted page at
  ``/pay/<session>`` where a test card number is typed in; PaymentIntents (off-session
  confirmation of a saved card), SetupIntents, PaymentMethods, refunds, and ``/v1/events``;
- ``Idempotency-Key``: a repeated request returns the first answer instead of acting twice;
- test cards as Stripe documents them: 4242 4242 4242 4242 pays, 4000 0000 0000 0341 is
  saved but every later charge of it is declined, 4000 0000 0000 0002 is declined outright;
- events signed like Stripe signs them (``t=<unix>,v1=<HMAC-SHA256(secret, "t.payload")>``)
  and posted to ``--webhook-url`` when given (the demo); tests read ``/v1/events`` instead;
- with ``--state-dir`` (the demo) its customers, cards, intents and sessions are kept in
  ``state.json`` there, rewritten atomically after every change, so a card saved before a
  restart still pays after it.

Run: ``python deploy/dev/stripe_standin.py --port 12111 --webhook-url URL --secret whsec_...``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CARD_OK = "4242424242424242"
CARD_SAVED_THEN_DECLINED = "4000000000000341"
CARD_DECLINED = "4000000000000002"


# Stripe's amounts are in the currency's smallest unit: none for these, three for these.
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "vnd"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


def _shown(amount: int, currency: str) -> str:
    """An amount in minor units as a person reads it (1000 jpy: "1000 JPY")."""
    places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{amount / 10**places:.{places}f} {currency.upper()}"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else {}
            if part not in node:
                node[part] = nxt
            elif last:
                node[part] = value
            node = node[part]
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


class StripeStandin:
    """The state: every object by id, the events in order, answers by idempotency key."""

    #: Events kept on disk (the newest); objects and idempotent answers are all kept.
    KEEP_EVENTS = 1000

    def __init__(
        self, *, webhook_url: str = "", webhook_secret: str = "", state_dir: str = ""
    ) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.base_url = ""
        self.lock = threading.RLock()
        self.state_path = Path(state_dir) / "state.json" if state_dir else None
        if self.state_path is not None:
            self.load()

    # -- state on disk -----------------------------------------------------------------------
    def load(self) -> None:
        assert self.state_path is not None
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        self.objects = data.get("objects", {})
        self.events = data.get("events", [])
        self.idempotent = {k: (v[0], v[1]) for k, v in data.get("idempotent", {}).items()}

    def save(self) -> None:
        """Write the whole state to a temporary file, flush it, then rename it over the old
        one: a crash leaves the previous state or the new one, never half a file."""
        if self.state_path is None:
            return
        with self.lock:  # one writer at a time, so an older state never replaces a newer
            self.events = self.events[-self.KEEP_EVENTS :]
            data = json.dumps(
                {"objects": self.objects, "events": self.events, "idempotent": self.idempotent}
            )
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_name(".state.json.tmp")
            with open(tmp, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)

    # -- helpers ---------------------------------------------------------------------------
    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("created", int(time.time()))
        obj.setdefault("livemode", False)
        self.objects[obj["id"]] = obj
        return obj

    def emit(self, kind: str, obj: dict[str, Any]) -> None:
        event = {
            "id": _id("evt"),
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2025-01-01",
            "pending_webhooks": 1,
            "data": {"object": json.loads(json.dumps(obj))},
        }
        self.events.append(event)
        if self.webhook_url:
            threading.Thread(target=self.deliver, args=(event,), daemon=True).start()

    def deliver(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        request = urllib.request.Request(  # noqa: S310 - a URL the operator configured
            self.webhook_url,
            data=payload.encode(),
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(payload, self.webhook_secret),
            },
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
        except OSError as exc:
            print(f"stand-in: webhook delivery of {event['id']} failed: {exc}")

    def card_method(self, card: str, customer: str | None) -> dict[str, Any]:
        card = re.sub(r"\D", "", card)
        return self.put(
            {
                "id": _id("pm"),
                "object": "payment_method",
                "type": "card",
                "customer": customer,
                "card": {
                    "brand": "visa",
                    "last4": card[-4:],
                    "exp_month": 12,
                    "exp_year": time.gmtime().tm_year + 3,
                },
                "_declines_later": card == CARD_SAVED_THEN_DECLINED,
            }
        )

    # -- API -------------------------------------------------------------------------------
    def create_customer(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        obj = {
            "id": _id("cus"),
            "object": "customer",
            "email": p.get("email"),
            "name": p.get("name"),
            "metadata": p.get("metadata", {}),
        }
        return 200, self.put(obj)

    def create_session(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        mode = p.get("mode", "payment")
        sid = _id("cs_test")
        amount = 0
        currency = p.get("currency", "eur")
        for item in p.get("line_items", []):
            pd = item.get("price_data", {})
            amount += int(pd.get("unit_amount", 0)) * int(item.get("quantity", 1))
            currency = pd.get("currency", currency)
        obj = {
            "id": sid,
            "object": "checkout.session",
            "mode": mode,
            "customer": p.get("customer"),
            "amount_total": amount if mode == "payment" else None,
            "currency": currency,
            "metadata": p.get("metadata", {}),
            "status": "open",
            "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
            "payment_intent": None,
            "setup_intent": None,
            "success_url": p.get("success_url"),
            "cancel_url": p.get("cancel_url"),
            "url": f"{self.base_url}/pay/{sid}",
            "_intent_data": p.get("payment_intent_data", {}),
        }
        return 200, self.put(obj)

    def complete_session(self, sid: str, card: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            session = self.objects.get(sid)
            if session is None or session["object"] != "checkout.session":
                return 404, _err("invalid_request_error", f"No such checkout.session: '{sid}'")
            if session["status"] != "open":
                return 400, _err("invalid_request_error", "This Checkout Session is complete.")
            if re.sub(r"\D", "", card) == CARD_DECLINED:
                return 402, _err("card_error", "Your card was declined.", code="card_declined")
            method = self.card_method(card, session["customer"])
            if session["mode"] == "setup":
                intent = self.put(
                    {
                        "id": _id("seti"),
                        "object": "setup_intent",
                        "customer": session["customer"],
                        "payment_method": method["id"],
                        "status": "succeeded",
                        "usage": "off_session",
                        "metadata": session["metadata"],
                    }
                )
                session["setup_intent"] = intent["id"]
                self.emit("setup_intent.succeeded", intent)
            else:
                data = session["_intent_data"]
                intent = self.put(
                    {
                        "id": _id("pi"),
                        "object": "payment_intent",
                        "amount": session["amount_total"],
                        "amount_received": session["amount_total"],
                        "currency": session["currency"],
                        "customer": session["customer"],
                        "payment_method": method["id"],
                        "setup_future_usage": data.get("setup_future_usage"),
                        "status": "succeeded",
                        "metadata": data.get("metadata", {}),
                        "_refunded": 0,
                    }
                )
                session["payment_intent"] = intent["id"]
                session["payment_status"] = "paid"
                self.emit("payment_intent.succeeded", intent)
            session["status"] = "complete"
            self.emit("checkout.session.completed", session)
            return 200, session

    def create_payment_intent(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        method = self.objects.get(p.get("payment_method", ""))
        if method is None:
            return 400, _err(
                "invalid_request_error",
                f"No such PaymentMethod: '{p.get('payment_method', '')}'",
                code="resource_missing",
            )
        amount = int(p.get("amount", 0))
        if amount <= 0:
            return 400, _err("invalid_request_error", "Amount must be at least 1 cent")
        intent = self.put(
            {
                "id": _id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": p.get("currency", "eur"),
                "customer": p.get("customer"),
                "payment_method": method["id"],
                "status": "requires_confirmation",
                "metadata": p.get("metadata", {}),
                "_refunded": 0,
            }
        )
        if p.get("confirm") in ("true", True):
            if method.get("_declines_later"):
                intent["status"] = "requires_payment_method"
                intent["last_payment_error"] = {"code": "card_declined"}
                self.emit("payment_intent.payment_failed", intent)
                error = _err("card_error", "Your card was declined.", code="card_declined")
                error["error"]["payment_intent"] = _public(intent)
                return 402, error
            intent["status"] = "succeeded"
            intent["amount_received"] = amount
            self.emit("payment_intent.succeeded", intent)
        return 200, intent

    def create_refund(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            intent = self.objects.get(p.get("payment_intent", ""))
            if intent is None or intent["status"] != "succeeded":
                return 400, _err("invalid_request_error", "No succeeded PaymentIntent to refund")
            amount = int(p.get("amount", intent["amount_received"] - intent["_refunded"]))
            if amount <= 0 or amount > intent["amount_received"] - intent["_refunded"]:
                return 400, _err("invalid_request_error", "Refund amount exceeds the charge")
            intent["_refunded"] += amount
            refund = self.put(
                {
                    "id": _id("re"),
                    "object": "refund",
                    "amount": amount,
                    "currency": intent["currency"],
                    "payment_intent": intent["id"],
                    "status": "succeeded",
                }
            )
            self.emit(
                "charge.refunded",
                {
                    "id": _id("ch"),
                    "object": "charge",
                    "payment_intent": intent["id"],
                    "amount": intent["amount_received"],
                    "amount_refunded": intent["_refunded"],
                    "currency": intent["currency"],
                    "refunded": intent["_refunded"] == intent["amount_received"],
                },
            )
            return 200, refund

    def handle(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        routes: list[tuple[str, str, Any]] = [
            ("POST", r"/v1/customers", lambda: self.create_customer(params)),
            ("POST", r"/v1/checkout/sessions", lambda: self.create_session(params)),
            ("POST", r"/v1/payment_intents", lambda: self.create_payment_intent(params)),
            ("POST", r"/v1/refunds", lambda: self.create_refund(params)),
            ("GET", r"/v1/events", lambda: (200, self.list_events(params))),
        ]
        for verb, pattern, action in routes:
            if verb == method and re.fullmatch(pattern, path):
                return action()
        match = re.fullmatch(r"/_standin/checkout/sessions/([\w]+)/complete", path)
        if method == "POST" and match:
            return self.complete_session(match.group(1), params.get("card", CARD_OK))
        match = re.fullmatch(
            r"/v1/(customers|checkout/sessions|payment_intents|setup_intents|payment_methods"
            r"|refunds|events)/([\w]+)",
            path,
        )
        if method == "GET" and match and match.group(2) in self.objects:
            return 200, self.objects[match.group(2)]
        if method == "GET" and match:
            return 404, _err("invalid_request_error", f"No such object: '{match.group(2)}'")
        return 404, _err("invalid_request_error", f"Unrecognized request URL ({method} {path})")

    def list_events(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = int(params.get("limit", 100))
        data = list(reversed(self.events))[:limit]
        if params.get("type"):
            data = [e for e in data if e["type"] == params["type"]]
        return {"object": "list", "url": "/v1/events", "has_more": False, "data": data}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _err(kind: str, message: str, *, code: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code:
        body["code"] = code
    return {"error": body}


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload``, computed the way Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


PAY_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Test payment</title>
<style>body{{font-family:system-ui,sans-serif;background:#f6f7fb;margin:0;padding:2rem}}
.box{{max-width:420px;margin:0 auto;background:#fff;border:1px solid #e3e6ee;border-radius:10px;
padding:1.5rem}}input{{width:100%;padding:.6rem;font:inherit;box-sizing:border-box}}
button{{margin-top:1rem;padding:.65rem 1.1rem;background:#3346d3;color:#fff;border:0;
border-radius:8px;font:inherit;font-weight:600}}.note{{color:#9a5b00;font-size:.9rem}}
.err{{color:#b42318}}</style></head><body><div class="box">
<p class="note">Payment stand-in for development: no real card is charged.</p>
<h1>{title}</h1>{error}<form method="post"><label for="card">Card number</label>
<input id="card" name="card" value="4242 4242 4242 4242" autocomplete="off">
<p class="note">4242 4242 4242 4242 pays; 4000 0000 0000 0341 pays now and fails later;
4000 0000 0000 0002 is declined.</p><button type="submit">{button}</button></form>
<p><a href="{cancel}">Cancel and go back</a></p></div></body></html>"""


def make_handler(state: StripeStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "stripe-standin/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _params(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            query = urlsplit(self.path).query
            return _nest(parse_qsl(query) + parse_qsl(body))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(_public(body) if "object" in body else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", _id("req"))
            self.end_headers()
            self.wfile.write(data)

        def _api(self, method: str) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/pay/"):
                self._page(method, path.removeprefix("/pay/"))
                return
            if not path.startswith("/_standin/") and not (
                self.headers.get("Authorization", "").startswith("Bearer sk_")
            ):
                self._send(401, _err("invalid_request_error", "Invalid API key provided"))
                return
            params = self._params()
            key = self.headers.get("Idempotency-Key")
            with state.lock:
                if method == "POST" and key and f"{path}:{key}" in state.idempotent:
                    self._send(*state.idempotent[f"{path}:{key}"])
                    return
                status, body = state.handle(method, path, params)
                if method == "POST" and key:
                    state.idempotent[f"{path}:{key}"] = (status, body)
                if method == "POST":
                    state.save()
            self._send(status, body)

        def _page(self, method: str, sid: str) -> None:
            session = state.objects.get(sid)
            if session is None:
                self.send_error(404, "No such checkout session")
                return
            error = ""
            if method == "POST":
                status, body = state.complete_session(sid, self._params().get("card", ""))
                state.save()
                if status == 200:
                    target = str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", sid)
                    self.send_response(303)
                    self.send_header("Location", target)
                    self.end_headers()
                    return
                error = f'<p class="err">{html.escape(body["error"]["message"])}</p>'
            amount = session.get("amount_total")
            title = (
                f"Pay {_shown(int(amount), str(session['currency']))}" if amount else "Save a card"
            )
            page = PAY_PAGE.format(
                title=title,
                error=error,
                button="Pay" if amount else "Save card",
                cancel=html.escape(str(session["cancel_url"] or "/")),
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_GET(self) -> None:
            self._api("GET")

        def do_POST(self) -> None:
            self._api("POST")

        def do_DELETE(self) -> None:
            self._api("DELETE")

    return Handler


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    webhook_url: str = "",
    webhook_secret: str = "",
    state_dir: str = "",
) -> tuple[ThreadingHTTPServer, StripeStandin]:
    """Start the stand-in in a background thread; returns the server (``server_address``)."""
    state = StripeStandin(
        webhook_url=webhook_url, webhook_secret=webhook_secret, state_dir=state_dir
    )
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    state.base_url = f"http://{host}:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--secret", default="whsec_standin")
    parser.add_argument("--state-dir", default="", help="keep the state in DIR/state.json")
    args = parser.parse_args()
    server, state = serve(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.secret,
        state_dir=args.state_dir,
    )
    print(f"Stripe stand-in on {state.base_url} (not Stripe; test cards only)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
