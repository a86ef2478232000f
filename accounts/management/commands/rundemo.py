"""Run the whole embedded demo in one terminal, and keep it running.

Children, started in this order: the task broker (a redis-server on a unix socket under
``var/redis/``, no TCP port), the Stripe stand-in (when no Stripe account is configured), a
Celery worker with beat, and the web server. A child that exits is logged and started again
after a pause that doubles while it keeps dying (1 s up to 30 s, back to 1 s once it stayed up
for a minute); the others keep running, so the panel never goes down with the worker.

When the worker dies, the operations it had in hand are resumed as soon as it is back (it is
the only worker, so none of their steps can still be running): the customer waits seconds,
not the sweeper's quarter of an hour.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("hosting.rundemo")

BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER = 1.0, 30.0, 60.0


def kill_group(pgid: int) -> None:
    """Kill what is left of a child's process group (a pool process, beat)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Child:
    """One supervised process: how to start it, and what happened to it so far."""

    name: str
    argv: list[str]
    pid_dir: Path | None = None
    ready: Callable[[], bool] | None = None
    after_death: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None

    def start(self) -> None:
        # A session (and process group) of its own: what it forks (the worker's pool and
        # beat) can be stopped with it, and Ctrl-C reaches only rundemo, which stops all.
        self.proc = subprocess.Popen(self.argv, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.pid_dir is not None:
            # var/run/<name>.pid: for whoever wants to look at (or stop) one part of the demo.
            (self.pid_dir / f"{self.name}.pid").write_text(f"{self.proc.pid}\n")


def redis_answers(sock_path: Path) -> bool:
    """PING the broker on its socket (no client library: this runs before anything else)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock_path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_argv(redis_dir: Path) -> list[str]:
    """The demo's broker: unix socket only, its queue kept in an append-only file so that
    tasks survive a restart of the demo."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CommandError(
            "redis-server is not installed: run `make demo` as root (it installs Debian's "
            "redis-server package through deploy/dev/ensure-redis-server.sh), or set "
            "CELERY_BROKER_URL to a broker you run yourself"
        )
    return [
        binary,
        "--port", "0",
        "--unixsocket", str(redis_dir / "redis.sock"),
        "--unixsocketperm", "700",
        "--dir", str(redis_dir),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--logfile", str(redis_dir / "redis.log"),
    ]  # fmt: skip


def demo_broker_socket() -> Path | None:
    """The socket of the broker rundemo runs itself, or None when one is configured."""
    url = settings.CELERY_BROKER_URL
    expected = f"redis+socket://{settings.DEMO_REDIS_DIR / 'redis.sock'}"
    return settings.DEMO_REDIS_DIR / "redis.sock" if url == expected else None


def demo_children(*, addr: str, python: str = sys.executable) -> list[Child]:
    """Everything the embedded demo runs, in start order."""
    var: Path = settings.VAR_DIR
    children: list[Child] = []
    sock = demo_broker_socket()
    if sock is not None:
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.parent.chmod(0o700)
        children.append(
            Child("broker", redis_server_argv(sock.parent), ready=lambda: redis_answers(sock))
        )
    api_base = getattr(settings, "STRIPE_API_BASE", "")
    if api_base.startswith("http://127.0.0.1:"):
        # No Stripe account in the demo: the local stand-in takes test cards, posts signed
        # webhooks back to the panel and keeps its customers and cards under var/stripe/.
        standin = [
            python, "deploy/dev/stripe_standin.py",
            "--port", api_base.rsplit(":", 1)[1].strip("/"),
            "--webhook-url", f"http://{addr}/billing/webhooks/stripe/",
            "--secret", settings.STRIPE_WEBHOOK_SECRET,
            "--state-dir", str(var / "stripe"),
        ]  # fmt: skip
        children.append(Child("stripe-standin", standin))
    vies_base = getattr(settings, "VIES_API_BASE", "")
    if vies_base.startswith("http://127.0.0.1:"):
        # Nor VIES: the local stand-in answers VAT id checks for a few example ids.
        port = vies_base.rsplit(":", 1)[1].split("/")[0]
        vies = [python, "deploy/dev/vies_standin.py", "--port", port]
        children.append(Child("vies-standin", vies))
    worker = [
        python, "-m", "celery", "-A", "hosting", "worker", "--beat",
        "-Q", "default,provisioning,billing",
        "--concurrency", "2",
        "--loglevel", "INFO",
        "--schedule", str(var / "celerybeat-schedule"),
    ]  # fmt: skip
    children.append(Child("worker", worker, after_death=recover_operations))
    children.append(
        Child("web", [python, "manage.py", "runserver", addr, "--noreload"]),
    )
    run = var / "run"
    run.mkdir(parents=True, exist_ok=True)
    for child in children:
        child.pid_dir = run
    return children


def recover_operations() -> None:
    """Resume what the dead worker had in hand (no other worker exists in the demo)."""
    from provisioning.workflow import operations_recover_after_worker_loss

    try:
        counts = operations_recover_after_worker_loss()
    except Exception:  # the database may be busy; the sweeper still comes later
        log.exception("could not resume the operations of the worker that died")
        return
    if any(counts.values()):
        log.warning("operations of the worker that died: %s", counts)


class Supervisor:
    """Starts the children, restarts any that exits, stops them all on request."""

    def __init__(self, children: list[Child], *, out: Callable[[str], None]) -> None:
        self.children = children
        self.out = out
        self.stopping = False

    def start_all(self) -> None:
        for child in self.children:
            child.start()
            if child.ready is not None:
                deadline = time.monotonic() + 20
                while not child.ready():
                    if child.proc is not None and child.proc.poll() is not None:
                        raise CommandError(f"{child.name} exited at start; see var/redis/")
                    if time.monotonic() > deadline:
                        raise CommandError(f"{child.name} did not answer within 20 s")
                    time.sleep(0.05)

    def tick(self) -> None:
        """Look at every child once: log a death, restart when its pause is over."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or self.stopping:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= STABLE_AFTER:
                    child.backoff = BACKOFF_FIRST
                child.restart_at = now + child.backoff
                self.out(
                    f"{child.name} exited (code {code}); starting it again in {child.backoff:.0f} s"
                )
                log.warning("demo child %s exited with %s", child.name, code)
                # Its leftovers go too: a pool process still running a step must not meet
                # the step resumed below.
                kill_group(child.proc.pid)
                if child.after_death is not None:
                    child.after_death()
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            elif now >= child.restart_at:
                child.restarts += 1
                child.start()
                self.out(f"{child.name} started again (restart {child.restarts})")

    def stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.children):  # the web first, the broker last
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
            if child.proc is not None:
                kill_group(child.proc.pid)


class Command(BaseCommand):
    help = (
        "Start the demo in one terminal: broker, Stripe stand-in, a Celery worker with beat "
        "and the web server, each restarted if it dies (Ctrl-C stops all)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))

    def handle(self, *args: Any, addr: str, **options: Any) -> None:
        supervisor = Supervisor(demo_children(addr=addr), out=self.stdout.write)

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            supervisor.start_all()
            self.stdout.write(
                self.style.SUCCESS(f"Hostwright demo: http://{addr}/  (admin: /admin/)")
            )
            self.stdout.write("Test card: 4242 4242 4242 4242 (any expiry and CVC) on the stand-in")
            while True:
                supervisor.tick()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            supervisor.stop_all()
