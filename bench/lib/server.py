"""gunicorn on a free loopback port, serving the panel for a benchmark."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    port: int, env: dict[str, str], *, workers: int, threads: int = 1
) -> subprocess.Popen[bytes]:
    """Start gunicorn (threaded workers when ``threads`` > 1) and wait until it answers."""
    argv = [str(Path(sys.executable).parent / "gunicorn"), "hosting.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--backlog", "2048",
            "--log-level", "warning"]  # fmt: skip
    if threads > 1:
        argv += ["--threads", str(threads), "--worker-class", "gthread"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120  # a loaded machine boots workers slowly
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/ping")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def stop_gunicorn(proc: subprocess.Popen[bytes]) -> None:
    """Stop it; a loaded machine may take longer than 20 s to end its workers: kill then."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
