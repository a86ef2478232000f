"""The settings refuse to start in production without what has no safe default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "HOSTING_ENV": "production",
    "SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ" * 2,
    "ALLOWED_HOSTS": "panel.example.com",
    "DATABASE_URL": "postgres://hostwright:hostwright@127.0.0.1:5432/hostwright",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/13",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in GOOD and not k.startswith("DJANGO")}
    clean["DJANGO_SETTINGS_MODULE"] = "hosting.settings"
    clean["HOSTING_VAR_DIR"] = str(ROOT / "var" / "test-settings")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        ("SECRET_KEY", "SECRET_KEY is not set: set it to a random string of at least 50"),
        ("ALLOWED_HOSTS", "ALLOWED_HOSTS is not set: set it to the panel's host names"),
        ("DATABASE_URL", "DATABASE_URL is not set: set it to the PostgreSQL URL"),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL is not set: set it to the Redis or RabbitMQ"),
        ("REDIS_URL", "REDIS_URL is not set: set it to the Redis URL"),
    ],
)
def test_production_refuses_to_start_naming_the_missing_variable(missing, words) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    result = manage(env, "check")
    assert result.returncode == 2
    # One line, naming the variable and what it should be; no traceback.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: ")
    assert words in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SECRET_KEY", "short", "SECRET_KEY is too weak"),
        ("DATABASE_URL", "sqlite:///var/x.sqlite3", "DATABASE_URL must point at PostgreSQL"),
        ("HOSTING_ENV", "prod", "HOSTING_ENV='prod' is not one of development, test, production"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("DEBUG", "true", "DEBUG must be false in production"),
    ],
)
def test_malformed_values_are_refused_with_one_line(name, value, words) -> None:
    result = manage({**GOOD, name: value}, "check")
    assert result.returncode == 2
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_passes_check_deploy_without_warnings() -> None:
    result = manage(GOOD, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


PRINT_DEFAULTS = """
import os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "hosting.settings"
django.setup()
from django.conf import settings as s
print(s.DATABASES["default"]["ENGINE"], s.CELERY_BROKER_URL)
"""


def test_embedded_default_needs_no_configuration(tmp_path) -> None:
    env = {"HOSTING_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_DEFAULTS],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in GOOD} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # SQLite, and the redis-server rundemo starts on a socket in the var dir (no TCP port)
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        f"redis+socket://{tmp_path}/redis/redis.sock",
    ]
