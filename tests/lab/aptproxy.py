"""A forwarding HTTP proxy for apt inside lab nodes: GET and HEAD to the allowed hosts only.

Lab nodes reach nothing but each other and the host. Their apt is pointed at this proxy on
the bridge address, which forwards plain-HTTP requests to the mirror hosts named in this
machine's own apt sources and refuses everything else.

    python -m tests.lab.aptproxy --listen 10.213.1.1:3142 --allow deb.debian.org
"""

from __future__ import annotations

import argparse
import http.client
import shutil
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Headers a proxy must not pass on (hop-by-hop).
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}


def make_handler(allowed: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self, method: str) -> None:
            url = urlsplit(self.path)
            if url.scheme != "http" or (url.hostname or "") not in allowed:
                self.send_error(403, "host not allowed")
                return
            upstream = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=60)
            path = url.path + (f"?{url.query}" if url.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            try:
                upstream.request(method, path or "/", headers=headers)
                response = upstream.getresponse()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in HOP and key.lower() != "transfer-encoding":
                        self.send_header(key, value)
                length = response.getheader("Content-Length")
                if length is None and method == "GET":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if method == "GET":
                    shutil.copyfileobj(response, self.wfile, 256 * 1024)
            except OSError as exc:
                self.send_error(502, f"upstream: {exc}")
            finally:
                upstream.close()

        def do_GET(self) -> None:
            self._forward("GET")

        def do_HEAD(self) -> None:
            self._forward("HEAD")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--allow", action="append", required=True, help="an allowed host name")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), make_handler(frozenset(args.allow)))
    server.daemon_threads = True
    print("listening", flush=True)  # the lab waits for this line
    server.serve_forever()


if __name__ == "__main__":
    main()
