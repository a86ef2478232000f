"""MariaDB databases and database users of an account, and the account's ``~/.my.cnf``.

Names belong to the account: a database is ``<account>_<name>``, a user ``<account>`` or
``<account>_<name>``, so one account never names another's. Every user exists twice with the
same password: ``'<user>'@'localhost'`` (the socket) and ``'<user>'@'127.0.0.1'`` (TCP from
the site's node), with the same grants. Passwords travel as MariaDB's native hash only,
except for ``db.account_ensure``, which makes the account's own password on the node and
writes it into ``~/.my.cnf`` without it ever leaving the node.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import Any

from hwagent import _sql, safefs, validate
from hwagent.errors import AgentError
from hwagent.registry import action

HOSTS = ("localhost", "127.0.0.1")
MYCNF = ".my.cnf"


def _db(account: str, name: str) -> tuple[str, str]:
    account = validate.linux_user(account)
    name = validate.db_name(name)
    if not name.startswith(account + "_"):
        raise AgentError("invalid", f"{name!r} does not belong to the account {account}")
    return account, name


def _user(account: str, user: str) -> tuple[str, str]:
    account = validate.linux_user(account)
    return account, validate.owned_by(validate.db_user(user), account)


def _exists(name: str) -> bool:
    return bool(
        _sql.rows(
            "SELECT 1 FROM information_schema.schemata "  # noqa: S608 (validated name)
            f"WHERE schema_name = '{name}'"
        )
    )


def _user_hosts(user: str) -> set[str]:
    return {r[0] for r in _sql.rows(f"SELECT host FROM mysql.user WHERE user = '{user}'")}  # noqa: S608


@action("db.ensure")
def ensure(*, account: str, name: str) -> dict[str, Any]:
    """Create the database ``name`` (utf8mb4) unless it exists.

    Checks first whether it exists, so ``created`` says whether this call made it (an undo
    drops only what it made). Leaves nothing behind on failure.
    """
    account, name = _db(account, name)
    if _exists(name):
        return {"changed": False, "created": False, "database": name}
    _sql.run(
        f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    )
    return {"changed": True, "created": True, "database": name}


@action("db.remove")
def remove(*, account: str, name: str) -> dict[str, Any]:
    """Drop the database with its data (a no-op when it is gone)."""
    account, name = _db(account, name)
    if not _exists(name):
        return {"changed": False, "removed": False}
    _sql.run(f"DROP DATABASE IF EXISTS `{name}`;")
    return {"changed": True, "removed": True}


def _set_user(user: str, pw_hash: str, databases: list[str]) -> None:
    statements = []
    for host in HOSTS:
        statements += [
            f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY PASSWORD '{pw_hash}';",
            f"ALTER USER '{user}'@'{host}' IDENTIFIED BY PASSWORD '{pw_hash}';",
        ]
        for db in databases:
            statements.append(f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'{host}';")
    _sql.run("\n".join(statements))


@action("db.user_ensure")
def user_ensure(
    *, account: str, user: str, password_hash: str, databases: list[str]
) -> dict[str, Any]:
    """Create (or bring up to date) the user at localhost and at 127.0.0.1 with the password
    hash, granted all privileges on each of the account's ``databases``.

    ``created`` says whether the user was missing before this call. On failure part-way the
    user may exist at one host only; running the action again completes it.
    """
    account, user = _user(account, user)
    pw_hash = _sql.password_hash(password_hash)
    grants = [_db(account, d)[1] for d in databases]
    had = _user_hosts(user)
    _set_user(user, pw_hash, grants)
    return {"changed": True, "created": not had, "user": user, "hosts": list(HOSTS)}


@action("db.user_password")
def user_password(*, account: str, user: str, password_hash: str) -> dict[str, Any]:
    """Change the user's password at both hosts; ``not_found`` when the user does not exist."""
    account, user = _user(account, user)
    pw_hash = _sql.password_hash(password_hash)
    if not _user_hosts(user):
        raise AgentError("not_found", f"the database user {user} does not exist")
    _set_user(user, pw_hash, [])
    return {"changed": True}


@action("db.user_remove")
def user_remove(*, account: str, user: str) -> dict[str, Any]:
    """Drop the user at every host it has (a no-op when it is gone)."""
    account, user = _user(account, user)
    hosts = sorted(_user_hosts(user))
    if not hosts:
        return {"changed": False, "removed": False}
    _sql.run("\n".join(f"DROP USER IF EXISTS '{user}'@'{h}';" for h in hosts if _host_ok(h)))
    return {"changed": True, "removed": True}


def _host_ok(host: str) -> bool:
    # Hosts come from mysql.user; only put plain ones into SQL.
    return all(c.isalnum() or c in ".:-%_" for c in host)


@action("db.account_ensure")
def account_ensure(*, account: str, user: str, name: str) -> dict[str, Any]:
    """The account's own database and user, with the password in ``~/.my.cnf``.

    Looks at the node first: when the user exists at both hosts and ``~/.my.cnf`` names it,
    the password in use is kept (a repair never changes a password a site uses). Otherwise a
    new password is made here, set, and written to ``~/.my.cnf`` (0600, the account's) by root
    through the home's handle: a fresh file under a random name, renamed over the old entry,
    so a link planted there is replaced and never written through. The password never leaves
    the node.
    """
    account, name = _db(account, name)
    account, user = _user(account, user)
    pw = safefs.account(account)
    created_db = not _exists(name)
    if created_db:
        _sql.run(
            f"CREATE DATABASE IF NOT EXISTS `{name}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        )
    had = _user_hosts(user)
    with safefs.home_fd(account) as home:
        current = _mycnf_password(home, pw.pw_uid, user)
        if current is not None and had >= set(HOSTS):
            password = current
        else:
            password = secrets.token_urlsafe(18)
        _set_user(user, _sql.native_hash(password), [name])
        content = f"[client]\nuser={user}\npassword={password}\ndatabase={name}\n"
        written = safefs.write_at(
            home, MYCNF, content.encode(), uid=pw.pw_uid, gid=pw.pw_gid, mode=0o600
        )
    return {
        "changed": created_db or not had or written,
        "created": created_db,
        "user_created": not had,
        "database": name,
        "user": user,
    }


def _mycnf_password(home: int, uid: int, user: str) -> str | None:
    """The password in ``~/.my.cnf`` when it is ours (one plain file of the account's, naming
    ``user``), read through the home's handle without following a link."""
    try:
        fd = os.open(MYCNF, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=home)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_nlink != 1:
            return None
        text = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    password = values.get("password", "")
    if values.get("user") != user or not password or not password.isprintable():
        return None
    return password


@action("db.account_remove")
def account_remove(*, account: str, user: str, name: str) -> dict[str, Any]:
    """Drop the account's own database and user, and remove ``~/.my.cnf`` (the entry only)."""
    account, name = _db(account, name)
    account, user = _user(account, user)
    changed = remove(account=account, name=name)["changed"]
    changed = user_remove(account=account, user=user)["changed"] or changed
    try:
        with safefs.home_fd(account) as home:
            changed = safefs.remove_at(home, MYCNF) or changed
    except AgentError as exc:
        if exc.code != "not_found":
            raise
    return {"changed": changed}


@action("db.inventory")
def inventory(*, account: str) -> dict[str, Any]:
    """What the account has in MariaDB: its databases and its users with their hosts."""
    account = validate.linux_user(account)
    users: dict[str, list[str]] = {}
    for user, host in _sql.account_users(account):
        users.setdefault(user, []).append(host)
    return {"changed": False, "databases": _sql.account_databases(account), "users": users}
