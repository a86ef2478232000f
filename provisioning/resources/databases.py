"""MariaDB databases and users for an account: what the panel checks before the node acts.

Names are always ``<account>_<name>`` (``validate_db_name``), so one account can never reach
another's databases, and they only contain ``[a-z0-9_]``. Passwords never reach the node: the
worker computes MariaDB's ``mysql_native_password`` hash and only that travels. On the node,
the agent's ``db.*`` actions make each user at ``localhost`` and at ``127.0.0.1`` with the same
password, so a site reaches its database over the socket and over TCP alike.
"""

from __future__ import annotations

import hashlib

from provisioning.validators import check_limit, validate_db_name, validate_password

__all__ = ["check_database_limit", "native_password_hash", "validate_db_name"]


def native_password_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash: ``*`` + upper hex of SHA1(SHA1(password))."""
    password = validate_password(password)
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def check_database_limit(*, used: int, allowed: int) -> None:
    """Refuse another database over the plan's ``databases`` limit."""
    check_limit(what="databases", used=used, allowed=allowed)
