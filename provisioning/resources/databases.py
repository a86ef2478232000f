"""MariaDB databases and users for an account, on the account's node.

Names are always ``<account>_<name>`` (``validate_db_name``), so one account can never reach
another's databases, and they only contain ``[a-z0-9_]``, which makes them safe inside
backquotes. Passwords never reach the node: the worker computes MariaDB's
``mysql_native_password`` hash and the node only sees ``IDENTIFIED BY PASSWORD '*...'``.

Every script runs the SQL through the ``mariadb`` client as root over the node's socket, with
the SQL on the client's stdin, and is idempotent (``IF NOT EXISTS`` / ``IF EXISTS``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from provisioning.resources.errors import ResourceRefused, check_limit
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import validate_db_name, validate_password

_NATIVE_HASH = re.compile(r"^\*[0-9A-F]{40}$")


def native_password_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash: ``*`` + upper hex of SHA1(SHA1(password))."""
    password = validate_password(password)
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def _sql_script(sql: str, *, secrets: tuple[str, ...] = ()) -> NodeScript:
    # A quoted heredoc: the shell expands nothing inside it. The SQL is built from validated
    # names and hex hashes only, so it can contain neither the terminator nor a quote.
    return NodeScript(
        "set -euo pipefail\nmariadb --batch --skip-column-names <<'HOSTWRIGHT_SQL'\n"
        + sql
        + "\nHOSTWRIGHT_SQL\n",
        secrets=secrets,
    )


def _hash(password_hash: str) -> str:
    if not _NATIVE_HASH.match(password_hash):
        raise ResourceRefused("Unusable password hash.", code="password_hash")
    return password_hash


def check_database_limit(*, used: int, allowed: int) -> None:
    """Refuse another database over the plan's ``databases`` limit."""
    check_limit(what="databases", used=used, allowed=allowed)


def database_create_script(*, account: str, name: str) -> NodeScript:
    """Create ``<account>_<name>`` with utf8mb4 (a no-op when it exists)."""
    db = validate_db_name(account=account, name=name)
    return _sql_script(
        f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    )


def database_delete_script(*, account: str, name: str) -> NodeScript:
    """Drop ``<account>_<name>`` (a no-op when it is gone)."""
    db = validate_db_name(account=account, name=name)
    return _sql_script(f"DROP DATABASE IF EXISTS `{db}`;")


def db_user_create_script(
    *,
    account: str,
    user: str,
    password_hash: str,
    databases: Sequence[str] = (),
    host: str = "localhost",
) -> NodeScript:
    """Create (or update) ``<account>_<user>@host`` with the password hash and grant it all
    privileges on the given databases of the same account."""
    name = validate_db_name(account=account, name=user)
    if host not in ("localhost", "127.0.0.1", "%"):
        raise ResourceRefused("Database users connect from localhost only.", code="db_host")
    pw = _hash(password_hash)
    statements = [
        f"CREATE USER IF NOT EXISTS '{name}'@'{host}' IDENTIFIED BY PASSWORD '{pw}';",
        f"ALTER USER '{name}'@'{host}' IDENTIFIED BY PASSWORD '{pw}';",
    ]
    for db in databases:
        full = validate_db_name(account=account, name=db)
        statements.append(f"GRANT ALL PRIVILEGES ON `{full}`.* TO '{name}'@'{host}';")
    return _sql_script("\n".join(statements), secrets=(pw,))


def db_user_password_script(
    *, account: str, user: str, password_hash: str, host: str = "localhost"
) -> NodeScript:
    """Change a database user's password; fails (MariaDB error) if the user does not exist."""
    name = validate_db_name(account=account, name=user)
    pw = _hash(password_hash)
    return _sql_script(
        f"ALTER USER '{name}'@'{host}' IDENTIFIED BY PASSWORD '{pw}';", secrets=(pw,)
    )


def db_user_delete_script(*, account: str, user: str, host: str = "localhost") -> NodeScript:
    name = validate_db_name(account=account, name=user)
    return _sql_script(f"DROP USER IF EXISTS '{name}'@'{host}';")


def account_databases_query_script(*, account: str) -> NodeScript:
    """List the account's databases, one per line (what is really on the node)."""
    prefix = validate_db_name(account=account, name="x")[:-1]
    # In a LIKE pattern "_" matches any character; the account's own underscore is literal.
    pattern = prefix.replace("_", "\\_") + "%"
    where = f"WHERE schema_name LIKE '{pattern}'"
    query = f"SELECT schema_name FROM information_schema.schemata {where}"  # noqa: S608
    return _sql_script(query + " ORDER BY 1;")
