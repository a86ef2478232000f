"""The embedded demo's supervisor: its own broker on a socket, children started again."""

from __future__ import annotations

import sys
import time

import pytest

from accounts.management.commands.rundemo import (
    Child,
    Supervisor,
    redis_answers,
    redis_server_argv,
)


def _until(predicate, *, what: str, limit: float = 30.0) -> None:
    """Wait for something that must happen; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture
def supervisor():
    lines: list[str] = []
    made: list[Supervisor] = []

    def make(children: list[Child]) -> Supervisor:
        sup = Supervisor(children, out=lines.append)
        sup.lines = lines  # type: ignore[attr-defined]
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.stop_all()


def test_a_child_that_dies_is_logged_and_started_again_while_the_others_run(supervisor, tmp_path):
    # given a demo with a short-lived "worker" and a long-running "web"
    lost: list[str] = []
    worker = Child(
        "worker",
        [sys.executable, "-c", "import time; time.sleep(0.3)"],
        after_death=lambda: lost.append("recovered"),
        pid_dir=tmp_path,
    )
    web = Child("web", [sys.executable, "-c", "import time; time.sleep(120)"], pid_dir=tmp_path)
    sup = supervisor([worker, web])
    sup.start_all()
    assert web.proc is not None
    web_pid = web.proc.pid

    # when the worker exits, and exits again
    def ticked_twice() -> bool:
        sup.tick()
        return worker.restarts >= 2

    _until(ticked_twice, what="the worker restarted twice")

    # then each death is logged and recovered from, the pause doubled, and the web never stopped
    assert [line for line in sup.lines if "exited" in line][:2] == [
        "worker exited (code 0); starting it again in 1 s",
        "worker exited (code 0); starting it again in 2 s",
    ]
    assert lost[:2] == ["recovered", "recovered"]
    assert web.proc.pid == web_pid and web.proc.poll() is None
    assert worker.proc is not None
    assert (tmp_path / "worker.pid").read_text().strip() == str(worker.proc.pid)


def test_the_demo_broker_answers_on_its_socket_only_and_comes_back(supervisor, tmp_path):
    # given the demo's redis-server, started on a socket under var/redis/
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    sock = redis_dir / "redis.sock"
    broker = Child("broker", redis_server_argv(redis_dir), ready=lambda: redis_answers(sock))
    sup = supervisor([broker])
    sup.start_all()
    assert redis_answers(sock)
    assert "--port" in broker.argv and broker.argv[broker.argv.index("--port") + 1] == "0"

    # when it is killed
    assert broker.proc is not None
    broker.proc.kill()

    # then the supervisor starts it again and it answers on the same socket
    def back() -> bool:
        sup.tick()
        return broker.restarts == 1 and redis_answers(sock)

    _until(back, what="the broker answered again")
