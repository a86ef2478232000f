"""A fresh, migrated PostgreSQL database for a benchmark, in about a second.

Migrating from scratch takes most of a ``--quick`` run's minute. The first benchmark migrates a
template database named after the migrations it contains; every run after that copies it
(``CREATE DATABASE ... TEMPLATE``), which PostgreSQL does at file level.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = "postgresql://hostwright:hostwright@127.0.0.1:5432/postgres"


def _migrations_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/[0-9]*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fresh_database(name: str, env: dict[str, str]) -> None:
    """Drop ``name`` and create it again from the migrated template (made when missing)."""
    import psycopg

    template = f"hw_bench_tpl_{_migrations_fingerprint()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template])
        if exists.fetchone() is None:
            conn.execute(f"CREATE DATABASE {template}")
            template_env = {
                **env,
                "DATABASE_URL": f"postgres://hostwright:hostwright@127.0.0.1:5432/{template}",
                "DATABASE_CONN_MAX_AGE": "0",
            }
            try:
                subprocess.run(
                    [sys.executable, "manage.py", "migrate", "-v0"],
                    cwd=ROOT, env=template_env, check=True,
                )  # fmt: skip
            except subprocess.CalledProcessError:
                conn.execute(f"DROP DATABASE IF EXISTS {template}")
                raise
            # Old templates (from earlier migrations) are dropped.
            for (old,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'hw_bench_tpl_%%' "
                "AND datname <> %s",
                [template],
            ).fetchall():
                conn.execute(f"DROP DATABASE IF EXISTS {old}")
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    os.environ.update(env)
