"""Reading configuration from the environment, with one-line refusals.

Settings modules call these helpers; a missing or malformed variable raises
``ConfigError`` whose message names the variable and what it should be, so
the process stops with a line an operator can act on rather than a traceback.
"""

from __future__ import annotations

import os
from typing import Final

from django.core.exceptions import ImproperlyConfigured

ENVIRONMENTS: Final = ("development", "test", "production")


class ConfigError(ImproperlyConfigured):
    """A configuration variable is missing or malformed."""


def env_str(name: str, default: str | None = None, *, hint: str = "") -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is not set{': ' + hint if hint else ''}")
    return default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def env_list(name: str, default: list[str] | None = None, *, hint: str = "") -> list[str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"{name} is not set{': ' + hint if hint else ''}")
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def hosting_env() -> str:
    value = os.environ.get("HOSTING_ENV", "development").strip() or "development"
    if value not in ENVIRONMENTS:
        raise ConfigError(f"HOSTING_ENV={value!r} is not one of {', '.join(ENVIRONMENTS)}")
    return value
