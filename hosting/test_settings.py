"""Settings for the test suite: PostgreSQL and Redis on loopback, nothing beyond it."""

from __future__ import annotations

import os

os.environ.setdefault("HOSTING_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://hostwright:hostwright@127.0.0.1:5432/hostwright")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

from hosting.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEBUG = False
