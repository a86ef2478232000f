"""Every action validates its arguments before it touches the node (no node needed: each
case below is refused before anything runs)."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
from hwagent import protocol
from hwagent.registry import ACTIONS, load_all

load_all()

GOOD = {
    "user": "hwtgood1",
    "owner": "hostwright service 1",
    "domain": "example.com",
    "service": 1,
    "workers": 2,
    "memory_mb": 256,
    "cpu_percent": 50,
    "processes": 40,
    "db_user": "hwtgood1",
    "database": "hwtgood1_main",
    "password": "secret-password-1",
    "path": "public_html/a.txt",
    "new_path": "public_html/b.txt",
    "mode": "644",
    "data": "",
    "kind": "access",
    "users": ["hwtgood1"],
}


def filler(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        return []
    if hint is bool:
        return False
    if hint is int:
        return 1
    if hint is str:
        return "x"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return filler(args[0]) if args else None


def args_for(name: str, **override: Any) -> dict[str, Any]:
    func = ACTIONS[name].func
    hints = typing.get_type_hints(func)
    out = {}
    for p in inspect.signature(func).parameters.values():
        if p.default is p.empty:
            out[p.name] = GOOD.get(p.name, filler(hints[p.name]))
    out.update(override)
    return out


def refused(name: str, args: dict[str, Any], *, tier: str = "worker") -> dict[str, Any]:
    answer = protocol.handle({"id": "t", "actions": [{"action": name, "args": args}]}, tier=tier)
    (result,) = answer["results"]
    assert result["ok"] is False, (name, args, result)
    return dict(result["error"])


WITH_USER = sorted(n for n, a in ACTIONS.items() if "user" in inspect.signature(a.func).parameters)


@pytest.mark.parametrize("name", WITH_USER)
@pytest.mark.parametrize("user", ["root;id", "../etc", "Root", "ab", "a" * 40, "hwt\n"])
def test_every_account_action_refuses_a_bad_account_name(name: str, user: str) -> None:
    error = refused(name, args_for(name, user=user))
    assert error["code"] == "invalid"
    assert "Traceback" not in error["message"]


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_action_refuses_unknown_and_mistyped_arguments(name: str) -> None:
    assert refused(name, {**args_for(name), "extra": 1})["code"] == "invalid"
    params = inspect.signature(ACTIONS[name].func).parameters
    for p in params:
        assert refused(name, {**args_for(name), p: {"a": object.__name__}})["code"] == "invalid"


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("user.ensure", {"owner": "someone else"}),
        ("user.ensure", {"owner": "hostwright service 1; id"}),
        ("user.ensure", {"welcome_html": "x" * 70000}),
        ("user.remove", {"owner": "hostwright service x"}),
        ("user.lock", {"owner": ""}),
        ("user.unlock", {"owner": "root"}),
        ("user.mycnf", {"owner": "x"}),
        ("site.ensure", {"domain": "exa mple.com"}),
        ("site.ensure", {"domain": "example.com;\n}"}),
        ("site.ensure", {"domain": "p\u0430ypal.com"}),
        ("site.ensure", {"service": 0}),
        ("pool.ensure", {"workers": 0}),
        ("pool.ensure", {"workers": 10_000}),
        ("pool.ensure", {"memory_mb": -1}),
        ("limits.set", {"cpu_percent": 0}),
        ("limits.set", {"processes": 0}),
        ("usage.measure", {"users": ["hwtgood1", "bad user"]}),
        ("usage.measure", {"month": "$(id)"}),
        ("inventory.list", {"kinds": ["shadow"]}),
        ("inventory.list", {"account": "../root"}),
        ("files.list", {"path": "../../etc"}),
        ("files.list", {"path": "/etc"}),
        ("files.list", {"path": "", "limit": 100_000}),
        ("files.read", {"path": ""}),
        ("files.read", {"length": 10**9}),
        ("files.write", {"path": "a\x00b"}),
        ("files.write", {"data": "not base64!"}),
        ("files.mkdir", {"path": "x/../../y"}),
        ("files.touch", {"path": ""}),
        ("files.rename", {"new_path": "/etc/passwd"}),
        ("files.delete", {"path": "."}),
        ("files.chmod", {"mode": "4755"}),
        ("files.chmod", {"mode": "u+s"}),
        ("logs.tail", {"kind": "../../shadow"}),
        ("logs.tail", {"max_bytes": 0}),
        ("sftp.enable", {"password_hash": "$1$plain"}),
        ("sftp.enable", {"public_keys": ['command="sh" ssh-ed25519 AAAA']}),
        ("sftp.enable", {"owner": "x"}),
    ],
)
def test_bad_values_are_refused_before_anything_runs(name: str, override: dict[str, Any]) -> None:
    error = refused(name, args_for(name, **override))
    assert error["code"] == "invalid", error
    assert error["changed"] == []


def test_a_password_a_client_file_cannot_hold_is_refused() -> None:
    for bad in ("a'b", 'a"b', "a\nb", "a#b", ""):
        error = refused("user.mycnf", args_for("user.mycnf", password=bad))
        assert error["code"] == "invalid"


def test_database_names_must_be_the_accounts() -> None:
    for field, value in (("db_user", "otheruser"), ("database", "otheruser_main")):
        error = refused("user.mycnf", args_for("user.mycnf", **{field: value}))
        assert error["code"] == "invalid"


@pytest.mark.parametrize("name", sorted(n for n, a in ACTIONS.items() if not a.web))
def test_the_web_tier_cannot_call_worker_actions(name: str) -> None:
    assert refused(name, args_for(name), tier="web")["code"] == "forbidden"


def test_the_web_tier_reaches_exactly_the_file_and_log_actions() -> None:
    web = sorted(n for n, a in ACTIONS.items() if a.web)
    assert all(n.startswith(("files.", "logs.", "node.ping")) for n in web), web
    assert "files.read" in web and "logs.tail" in web
