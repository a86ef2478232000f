"""Run the web server, a Celery worker and beat together, for the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the panel and a Celery worker with beat in one terminal (Ctrl-C stops both)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))

    def handle(self, *args: Any, addr: str, **options: Any) -> None:
        var = settings.VAR_DIR
        for sub in ("broker/queue", "broker/processed", "broker/control"):
            (var / sub).mkdir(parents=True, exist_ok=True)
        python = sys.executable
        procs = [
            subprocess.Popen([python, "manage.py", "runserver", addr, "--noreload"]),
            subprocess.Popen(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "hosting",
                    "worker",
                    "--beat",
                    "-Q",
                    "default,provisioning,billing",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(var / "celerybeat-schedule"),
                ]
            ),
        ]
        api_base = getattr(settings, "STRIPE_API_BASE", "")
        if api_base.startswith("http://127.0.0.1:"):
            # No Stripe account in the demo: the local stand-in takes test cards and posts
            # signed webhooks back to the panel.
            procs.append(
                subprocess.Popen(
                    [
                        python, "deploy/dev/stripe_standin.py",
                        "--port", api_base.rsplit(":", 1)[1].strip("/"),
                        "--webhook-url", f"http://{addr}/billing/webhooks/stripe/",
                        "--secret", settings.STRIPE_WEBHOOK_SECRET,
                    ]
                )
            )  # fmt: skip
        self.stdout.write(self.style.SUCCESS(f"Hostwright demo: http://{addr}/  (admin: /admin/)"))
        self.stdout.write("Test card: 4242 4242 4242 4242 (any expiry and CVC) on the stand-in")

        def stop(*_: object) -> None:
            for proc in procs:
                proc.terminate()

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for proc in procs:
                proc.wait(timeout=20)
