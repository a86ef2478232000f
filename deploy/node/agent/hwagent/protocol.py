"""The agent's wire protocol: one JSON request per line in, one JSON answer per line out.

Request::

    {"id": "...", "actions": [{"action": "user.ensure", "args": {...}}, ...]}

Answer::

    {"id": "...", "ok": true|false, "results": [
        {"action": "...", "ok": true, "changed": bool, "data": {...}, "ms": 3},
        {"action": "...", "ok": false, "error": {"code", "message", "permanent", "changed",
                                                  "detail"}},
        {"action": "...", "ok": false, "skipped": true},
    ]}

Actions run in order; the first failure stops the batch and the actions after it are answered
``skipped``. A request that cannot be read at all is answered with a top-level ``error`` and no
results. Arguments are checked against the action function's signature and type hints before
the function runs: unknown, missing or mistyped arguments are an ``invalid`` error, an action
the caller's tier may not call is ``forbidden``. Nothing a caller sends reaches a shell.
"""

from __future__ import annotations

import inspect
import json
import time
import traceback
import types
import typing
from typing import Any

from hwagent.errors import AgentError
from hwagent.registry import ACTIONS, Action

TIERS = ("worker", "web")
MAX_ACTIONS = 200
ID_MAX = 100


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return "a list"
    if origin is dict:
        return "an object"
    if hint is type(None):
        return "null"
    names = {str: "text", int: "a whole number", bool: "true or false", float: "a number"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a (simple) type hint: str, int, bool, float, list[X],
    dict[str, X], unions and Any."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items()
        )
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return False


def check_args(act: Action, args: Any) -> dict[str, Any]:
    """The arguments, checked against the action's keyword-only parameters and their types."""
    if not isinstance(args, dict):
        raise AgentError("invalid", f"{act.name}: args must be an object")
    sig = inspect.signature(act.func)
    hints = typing.get_type_hints(act.func)
    params = {
        name: p
        for name, p in sig.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise AgentError("invalid", f"{act.name}: unknown argument(s) {', '.join(unknown)}")
    missing = sorted(n for n, p in params.items() if p.default is p.empty and n not in args)
    if missing:
        raise AgentError("invalid", f"{act.name}: missing argument(s) {', '.join(missing)}")
    for name, value in args.items():
        hint = hints.get(name, Any)
        if not _matches(value, hint):
            raise AgentError("invalid", f"{act.name}: {name} must be {_type_name(hint)}")
    return args


def run_action(act: Action, args: Any) -> dict[str, Any]:
    """One action's result entry (with ``ms``, its duration); every failure becomes a
    structured error."""
    started = time.monotonic()
    result = _run_action(act, args)
    result["ms"] = round((time.monotonic() - started) * 1000)
    return result


def _run_action(act: Action, args: Any) -> dict[str, Any]:
    try:
        checked = check_args(act, args)
        out = act.func(**checked)
        if not isinstance(out, dict):
            raise AgentError("failed", f"{act.name} gave no result", detail=repr(out)[:200])
        data = dict(out)
        changed = bool(data.pop("changed", False))
        return {"action": act.name, "ok": True, "changed": changed, "data": data}
    except AgentError as exc:
        return {"action": act.name, "ok": False, "error": exc.as_dict()}
    except Exception as exc:
        # A bug or an unexpected node state: the caller gets a plain message, the operator
        # the exception's last frames in ``detail``.
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames)
        err = AgentError(
            "failed",
            f"{act.name} failed on the node",
            permanent=False,
            detail=f"{detail} at {where}"[:2000],
        )
        return {"action": act.name, "ok": False, "error": err.as_dict()}


def _refusal(name: str, code: str, message: str) -> dict[str, Any]:
    return {"action": name, "ok": False, "error": AgentError(code, message).as_dict()}


def handle(request: Any, *, tier: str) -> dict[str, Any]:
    """Answer one decoded request."""
    if not isinstance(request, dict):
        return bad_request(None, "the request must be a JSON object")
    req_id = request.get("id")
    if not isinstance(req_id, str) or len(req_id) > ID_MAX:
        return bad_request(None, f"the request needs an id (text, at most {ID_MAX} characters)")
    unknown = sorted(set(request) - {"id", "actions"})
    if unknown:
        return bad_request(req_id, f"unknown request field(s) {', '.join(unknown)}")
    actions = request.get("actions")
    if not isinstance(actions, list) or not actions or len(actions) > MAX_ACTIONS:
        return bad_request(req_id, f"actions must be a list of 1 to {MAX_ACTIONS} actions")
    results: list[dict[str, Any]] = []
    failed = False
    for item in actions:
        name = item.get("action") if isinstance(item, dict) else None
        label = name if isinstance(name, str) else "?"
        if failed:
            results.append({"action": label, "ok": False, "skipped": True})
            continue
        result = _one(item, name, label, tier)
        failed = not result["ok"]
        results.append(result)
    return {"id": req_id, "ok": not failed, "results": results}


def _one(item: Any, name: Any, label: str, tier: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(name, str):
        return _refusal(label, "invalid", 'each action must be {"action": name, "args": {...}}')
    extra = sorted(set(item) - {"action", "args"})
    if extra:
        return _refusal(name, "invalid", f"unknown action field(s) {', '.join(extra)}")
    act = ACTIONS.get(name)
    if act is None:
        return _refusal(name[:100], "unknown_action", f"there is no action {name[:100]!r}")
    if tier != "worker" and not act.web:
        return _refusal(name, "forbidden", f"{name} is not open to the {tier} tier")
    return run_action(act, item.get("args", {}))


def bad_request(req_id: str | None, message: str) -> dict[str, Any]:
    return {
        "id": req_id,
        "ok": False,
        "results": [],
        "error": AgentError("bad_request", message).as_dict(),
    }


def handle_line(line: bytes, *, tier: str) -> dict[str, Any]:
    """Answer one line as it came from the channel."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return bad_request(None, "the request is not JSON")
    return handle(request, tier=tier)


def encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
