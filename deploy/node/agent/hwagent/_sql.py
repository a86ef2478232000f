"""SQL for the node's MariaDB, as root over its socket, through the ``mariadb`` client.

The statements go on the client's stdin, never into its command line. Every name put into
SQL has passed a validator that allows ``[a-z0-9_]`` only, and password hashes match
``*[0-9A-F]{40}``: neither can close a quote or a backquote.
"""

from __future__ import annotations

import hashlib
import re
import subprocess

from hwagent.errors import AgentError

_NATIVE_HASH = re.compile(r"^\*[0-9A-F]{40}$")
# Errors of the server being down or starting: worth another attempt.
_UNAVAILABLE = ("Can't connect", "ERROR 2002", "ERROR 2003", "ERROR 2013", "Lost connection")


def native_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash: ``*`` + upper hex of SHA1(SHA1(password))."""
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def password_hash(value: object) -> str:
    if not isinstance(value, str) or not _NATIVE_HASH.match(value):
        raise AgentError("invalid", "that is not a usable database password hash")
    return value


def run(sql: str, *, database: str | None = None, stdin: bytes | None = None) -> str:
    """Run statements and return the client's output (tab-separated rows, no headers).

    A server that cannot be reached is a transient ``unavailable`` error (one that does not
    answer in time, ``busy``); anything else MariaDB refuses
    is a permanent ``failed`` error whose ``detail`` holds the client's message.
    """
    argv = ["mariadb", "--batch", "--skip-column-names", "--protocol=socket"]
    if database:
        argv.append(database)
    data = stdin if stdin is not None else sql.encode()
    if stdin is not None:
        argv += ["-e", sql]
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise AgentError(
            "busy", "the database server did not answer in time", permanent=False
        ) from None
    except FileNotFoundError:
        raise AgentError("failed", "the database server is not installed on this node") from None
    err = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0:
        if any(marker in err for marker in _UNAVAILABLE):
            # The client never reached the server: this statement changed nothing.
            raise AgentError(
                "unavailable",
                "the database server is not answering",
                permanent=False,
                detail=err[-500:],
            )
        raise AgentError("failed", "the database server refused the change", detail=err[-500:])
    return done.stdout.decode(errors="replace")


def rows(sql: str) -> list[list[str]]:
    return [line.split("\t") for line in run(sql).splitlines() if line]


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` (its ``_`` taken literally)."""
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def account_databases(account: str) -> list[str]:
    """The account's databases on the server: named ``<account>_...``."""
    pattern = like_prefix(account + "_")
    return [
        r[0]
        for r in rows(
            "SELECT schema_name FROM information_schema.schemata "  # noqa: S608 (validated)
            f"WHERE schema_name LIKE '{pattern}' ORDER BY 1"
        )
    ]


def account_users(account: str) -> list[tuple[str, str]]:
    """The account's database users as (user, host): named ``<account>`` or ``<account>_...``."""
    pattern = like_prefix(account + "_")
    return [
        (r[0], r[1])
        for r in rows(
            "SELECT user, host FROM mysql.user "  # noqa: S608 (validated)
            f"WHERE user = '{account}' OR user LIKE '{pattern}' ORDER BY 1, 2"
        )
    ]
