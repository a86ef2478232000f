"""Where actions are declared: ``@action("user.ensure")`` on one function per action.

An action function takes keyword arguments only (the request's ``args``), validates every one of
them before touching the node, and returns a dict: ``{"changed": bool, ...data}``. It raises
``AgentError`` for anything it refuses or cannot do. Actions are idempotent: asking twice for
the same state changes nothing the second time.

``web=True`` marks the few per-account actions (files, log tails) that the web tier's key may
call; they run as the account's Linux user. Every action is open to the worker key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ActionFunc = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Action:
    name: str
    func: ActionFunc
    web: bool = False


ACTIONS: dict[str, Action] = {}


def action(name: str, *, web: bool = False) -> Callable[[ActionFunc], ActionFunc]:
    def register(func: ActionFunc) -> ActionFunc:
        if name in ACTIONS:
            raise RuntimeError(f"action {name} declared twice")
        ACTIONS[name] = Action(name=name, func=func, web=web)
        return func

    return register


# Modules of the agent's machinery, not of resource kinds.
CORE_MODULES = frozenset({"errors", "registry", "protocol", "validate", "safefs", "system"})


def load_all() -> dict[str, Action]:
    """Import every resource module of the package, so each registers its actions."""
    import importlib
    import pkgutil

    import hwagent

    for info in pkgutil.iter_modules(hwagent.__path__):
        if not info.name.startswith("_") and info.name not in CORE_MODULES:
            importlib.import_module(f"hwagent.{info.name}")
    return ACTIONS
