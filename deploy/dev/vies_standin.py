#!/usr/bin/env python3
"""A local stand-in for VIES, the EU's register of VAT ids: its REST API's
``POST /check-vat-number``, as Hostwright calls it.

It is NOT VIES: a small in-memory HTTP server, standard library only, that answers the way
the European Commission's service does, so that tests and the demo check VAT ids without a
network. What it covers:

- a register of a few real-format ids (``REGISTER``); any other id is answered
  ``"valid": false``, as VIES answers for an id that is not registered;
- ``requestIdentifier`` (the consultation number) only when the request names a requester,
  and ``requestDate`` with VIES's time zone suffix;
- member states that do not answer (``--unavailable FR,IT``, or ``state.unavailable`` in tests):
  the error body VIES sends then (``actionSucceed: false``, ``MS_UNAVAILABLE``);
- malformed requests: ``INVALID_INPUT`` with HTTP 400.

Run: ``python deploy/dev/vies_standin.py --port 12112 [--unavailable IT]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Ids with valid check digits and the trader VIES returns for them (example data).
REGISTER: dict[tuple[str, str], tuple[str, str]] = {
    ("DE", "136695976"): ("Beispiel Hosting GmbH", "Musterstrasse 1\n10115 Berlin"),
    ("FR", "40303265045"): ("Exemple Web SARL", "1 rue de l'Exemple\n75001 Paris"),
    ("NL", "004495445B01"): ("Voorbeeld Diensten B.V.", "Voorbeeldstraat 2\n1011 AB Amsterdam"),
    ("BE", "0403019261"): ("Exemple Belgique SA", "Rue Exemple 3\n1000 Bruxelles"),
    ("IT", "00743110157"): ("Esempio Servizi S.p.A.", "Via Esempio 4\n20121 Milano"),
    ("AT", "U13585627"): ("Beispiel Handel GmbH", "Beispielgasse 5\n1010 Wien"),
    ("ES", "B58378431"): ("Ejemplo Servicios S.L.", "Calle Ejemplo 6\n08001 Barcelona"),
}
MEMBER_STATES = set(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "EL",
        "ES",
        "FI",
        "FR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "XI",
    ]
)
NUMBER = re.compile(r"^[0-9A-Za-z+*.]{2,12}$")


class ViesStandin:
    """The state: the register, which member states are down, and every request seen."""

    def __init__(self, *, unavailable: set[str] | None = None) -> None:
        self.register = dict(REGISTER)
        self.unavailable: set[str] = set(unavailable or ())
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self.lock = threading.Lock()

    def check(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        country = str(body.get("countryCode", "")).upper()
        number = str(body.get("vatNumber", "")).replace(" ", "").upper()
        with self.lock:
            self.requests.append(dict(body))
            down = country in self.unavailable
        if country not in MEMBER_STATES or not NUMBER.match(number):
            return 400, _error("INVALID_INPUT")
        if down:
            return 200, _error("MS_UNAVAILABLE")
        trader = self.register.get((country, number))
        answer: dict[str, Any] = {
            "countryCode": country,
            "vatNumber": number,
            "requestDate": f"{dt.date.today().isoformat()}+01:00",
            "valid": trader is not None,
            "requestIdentifier": "",
            "name": trader[0] if trader else "---",
            "address": trader[1] if trader else "---",
        }
        if body.get("requesterMemberStateCode") and body.get("requesterNumber"):
            answer["requestIdentifier"] = "WAPI" + secrets.token_hex(6).upper()
        return 200, answer


def _error(name: str) -> dict[str, Any]:
    return {"actionSucceed": False, "errorWrappers": [{"error": name}]}


def make_handler(state: ViesStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path.rstrip("/").rsplit("/", 1)[-1] != "check-vat-number":
                self._send(404, _error("NOT_FOUND"))
                return
            length = min(int(self.headers.get("Content-Length") or 0), 65536)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, _error("INVALID_INPUT"))
                return
            if not isinstance(body, dict):
                self._send(400, _error("INVALID_INPUT"))
                return
            self._send(*state.check(body))

    return Handler


def serve(
    *, host: str = "127.0.0.1", port: int = 0, unavailable: set[str] | None = None
) -> tuple[ThreadingHTTPServer, ViesStandin]:
    """Start the stand-in in a background thread; returns the server and its state."""
    state = ViesStandin(unavailable=unavailable)
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    state.base_url = f"http://{host}:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--unavailable", default="", help="member states that do not answer")
    args = parser.parse_args()
    down = {c.strip().upper() for c in args.unavailable.split(",") if c.strip()}
    server, state = serve(host=args.host, port=args.port, unavailable=down)
    ids = ", ".join(c + n for c, n in REGISTER)
    print(f"VIES stand-in on {state.base_url} (not VIES; registered: {ids})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
