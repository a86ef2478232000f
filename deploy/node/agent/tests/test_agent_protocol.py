"""The agent's protocol: batches, refusals and structured errors (no node needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hwagent import protocol
from hwagent.errors import AgentError
from hwagent.registry import ACTIONS, Action, action, load_all

AGENT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _actions() -> Any:
    load_all()
    added: list[str] = []

    def register(name: str, func: Any, *, web: bool = False) -> None:
        ACTIONS[name] = Action(name=name, func=func, web=web)
        added.append(name)

    yield register
    for name in added:
        ACTIONS.pop(name, None)


def echo(*, text: str, times: int = 1, tags: list[str] | None = None) -> dict[str, Any]:
    return {"changed": True, "text": text * times, "tags": tags or []}


def boom() -> dict[str, Any]:
    raise RuntimeError("/etc/secret-path went wrong")


def refuse() -> dict[str, Any]:
    raise AgentError("conflict", "that name is taken", changed=["x"])


def req(*actions: dict[str, Any], tier: str = "worker") -> dict[str, Any]:
    return protocol.handle({"id": "r1", "actions": list(actions)}, tier=tier)


def test_actions_run_in_order_and_report_changed_and_data(_actions: Any) -> None:
    _actions("t.echo", echo)
    answer = req(
        {"action": "t.echo", "args": {"text": "ab", "times": 2}},
        {"action": "t.echo", "args": {"text": "c", "tags": ["x"]}},
    )
    assert answer["id"] == "r1" and answer["ok"] is True
    first, second = answer["results"]
    assert first["ok"] and first["changed"] and first["data"] == {"text": "abab", "tags": []}
    assert second["data"]["tags"] == ["x"]
    assert isinstance(first["ms"], int)


def test_the_first_failure_stops_the_batch(_actions: Any) -> None:
    _actions("t.echo", echo)
    _actions("t.refuse", refuse)
    answer = req(
        {"action": "t.echo", "args": {"text": "a"}},
        {"action": "t.refuse"},
        {"action": "t.echo", "args": {"text": "never"}},
    )
    assert answer["ok"] is False
    ok, failed, skipped = answer["results"]
    assert ok["ok"]
    assert failed["error"] == {
        "code": "conflict",
        "message": "that name is taken",
        "permanent": True,
        "changed": ["x"],
        "detail": "",
    }
    assert skipped == {"action": "t.echo", "ok": False, "skipped": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing argument(s) text"),
        ({"text": "a", "shell": "id"}, "unknown argument(s) shell"),
        ({"text": 3}, "text must be text"),
        ({"text": "a", "times": True}, "times must be a whole number"),
        ({"text": "a", "times": "2"}, "times must be a whole number"),
        ({"text": "a", "tags": ["x", 1]}, "tags must be a list or null"),
        ("text=a", "args must be an object"),
    ],
)
def test_arguments_are_checked_against_the_signature(
    _actions: Any, args: Any, message: Any
) -> None:
    _actions("t.echo", echo)
    (result,) = req({"action": "t.echo", "args": args})["results"]
    assert result["ok"] is False
    assert result["error"]["code"] == "invalid"
    assert message in result["error"]["message"]


def test_unknown_actions_and_malformed_entries_are_refused() -> None:
    (unknown,) = req({"action": "shell.run", "args": {"cmd": "id"}})["results"]
    assert unknown["error"]["code"] == "unknown_action"
    (bad,) = req({"name": "x"})["results"]
    assert bad["error"]["code"] == "invalid"
    (extra,) = req({"action": "node.ping", "args": {}, "sudo": True})["results"]
    assert extra["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    "request_",
    [
        [],
        {"actions": [{"action": "node.ping"}]},
        {"id": 5, "actions": [{"action": "node.ping"}]},
        {"id": "x", "actions": []},
        {"id": "x", "actions": "node.ping"},
        {"id": "x", "actions": [{"action": "node.ping"}], "as": "root"},
        {"id": "x", "actions": [{"action": "node.ping"}] * (protocol.MAX_ACTIONS + 1)},
    ],
)
def test_bad_requests_get_a_request_level_error(request_: Any) -> None:
    answer = protocol.handle(request_, tier="worker")
    assert answer["ok"] is False and answer["results"] == []
    assert answer["error"]["code"] == "bad_request"


def test_a_line_that_is_not_json_is_refused() -> None:
    answer = protocol.handle_line(b"bash -c id\n", tier="worker")
    assert answer["error"]["code"] == "bad_request"


def test_the_web_tier_reaches_only_web_actions(_actions: Any) -> None:
    _actions("t.echo", echo)
    _actions("t.webecho", echo, web=True)
    answer = req(
        {"action": "t.webecho", "args": {"text": "a"}},
        {"action": "t.echo", "args": {"text": "a"}},
        tier="web",
    )
    ok, refused = answer["results"]
    assert ok["ok"] and refused["error"]["code"] == "forbidden"


def test_every_registered_action_declares_keyword_only_typed_parameters() -> None:
    import inspect
    import typing

    for name, act in load_all().items():
        params = inspect.signature(act.func).parameters.values()
        hints = typing.get_type_hints(act.func)
        for p in params:
            assert p.kind is p.KEYWORD_ONLY, f"{name}: {p.name} must be keyword-only"
            assert p.name in hints, f"{name}: {p.name} has no type"
        assert "." in name, name


def test_unexpected_exceptions_become_plain_errors_without_a_traceback(_actions: Any) -> None:
    _actions("t.boom", boom)
    (result,) = req({"action": "t.boom"})["results"]
    error = result["error"]
    assert error["code"] == "failed" and error["permanent"] is False
    assert error["message"] == "t.boom failed on the node"
    assert "Traceback" not in json.dumps(error)
    assert "RuntimeError" in error["detail"]


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        action("node.ping")(echo)


def run_agent(
    lines: list[bytes], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from hwagent.__main__ import main; "
        "sys.exit(main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", code, str(AGENT_DIR), *args],
        input=b"".join(lines),
        capture_output=True,
        env=env or {"PATH": os.environ["PATH"]},
        timeout=60,
        check=False,
    )


def test_the_program_answers_one_line_per_request() -> None:
    proc = run_agent(
        [
            b'{"id": "1", "actions": [{"action": "node.ping"}]}\n',
            b"\n",
            b"not json\n",
            b'{"id": "2", "actions": [{"action": "node.ping", "args": {}}]}\n',
        ],
        "--tier",
        "web",
    )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == ["1", None, "2"]
    assert answers[0]["results"][0]["data"]["version"] >= 1


def test_under_a_forced_command_only_the_agent_itself_may_be_asked_for() -> None:
    env = {"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": "id"}
    proc = run_agent(
        [b'{"id": "1", "actions": [{"action": "node.ping"}]}\n'], "--tier", "web", env=env
    )
    assert proc.returncode == 2
    (answer,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answer["error"]["code"] == "forbidden" and "uid=" not in proc.stdout.decode()
    env["SSH_ORIGINAL_COMMAND"] = "/usr/local/sbin/hostwright-agent --tier worker"
    proc = run_agent(
        [b'{"id": "1", "actions": [{"action": "node.ping"}]}\n'], "--tier", "web", env=env
    )
    assert proc.returncode == 2
    env["SSH_ORIGINAL_COMMAND"] = "/usr/local/sbin/hostwright-agent --tier web"
    proc = run_agent(
        [b'{"id": "1", "actions": [{"action": "node.ping"}]}\n'], "--tier", "web", env=env
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True


def test_an_unknown_tier_does_not_start() -> None:
    proc = run_agent([], "--tier", "root")
    assert proc.returncode != 0 and proc.stdout == b""
