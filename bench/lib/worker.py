"""A Celery worker of the engine for a benchmark: started in its own process group, waited for
until it answers a ping, stopped warm (running tasks finish) or killed with its group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    name: str,
    concurrency: int,
    env: Mapping[str, str],
    *,
    include: Sequence[str] = (),
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a worker on the provisioning queue named ``name`` (``x@localhost``); the queue is
    purged of what an earlier run left, and the worker answers before this returns."""
    argv = [sys.executable, "-m", "celery", "-A", "hosting", "worker", "-Q", "provisioning",
            "-c", str(concurrency), "-n", name, "--without-mingle", "--without-gossip",
            "--without-heartbeat", "-l", "WARNING"]  # fmt: skip
    for module in include:
        argv += ["--include", module]
    output = {"stdout": log, "stderr": subprocess.STDOUT} if log is not None else {}
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env), start_new_session=True, **output)  # type: ignore[call-overload]
    from hosting.celery import app

    app.control.purge()
    for _ in range(120):
        if app.control.ping(destination=[name], timeout=0.5):
            return proc
    raise SystemExit("the worker did not start")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """A warm shutdown (SIGTERM to the main process: running tasks finish), then the group."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
