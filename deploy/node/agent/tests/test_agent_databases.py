"""db.* actions: validation of every argument, then MariaDB and ~/.my.cnf on this node."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Decoy, plant_hardlink, plant_symlink
from hwagent import _sql, databases
from hwagent.errors import AgentError

HASH = _sql.native_hash("a-good-password-1")


def user(**kw: Any) -> dict[str, Any]:
    return {"account": "alice", "user": "alice_app", "password_hash": HASH, "databases": [], **kw}


BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (databases.ensure, {"account": "Alice", "name": "alice_shop"}),
    (databases.ensure, {"account": "alice", "name": "bob_shop"}),
    (databases.ensure, {"account": "alice", "name": "alice_x`; DROP"}),
    (databases.ensure, {"account": "alice", "name": "alice"}),
    (databases.remove, {"account": "alice", "name": "alicex_shop"}),
    (databases.remove, {"account": "../x", "name": "x_shop"}),
    (databases.user_ensure, user(user="bob_app")),
    (databases.user_ensure, user(password_hash="secret")),  # noqa: S106
    (databases.user_ensure, user(databases=["bob_db"])),
    (databases.user_ensure, user(user="alice_a'pp")),
    (databases.user_password, {**user(password_hash="*" + "G" * 40), "databases": None}),
    (databases.user_password, {**user(user="root"), "databases": None}),
    (databases.user_remove, {"account": "alice", "user": "mysql"}),
    (databases.user_remove, {"account": "al", "user": "al_app"}),
    (databases.account_ensure, {"account": "alice", "user": "bob", "name": "alice_main"}),
    (databases.account_ensure, {"account": "alice", "user": "alice", "name": "bob_main"}),
    (databases.account_remove, {"account": "alice", "user": "alice", "name": "main"}),
    (databases.inventory, {"account": "root!"}),
]


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_db_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    args = {k: v for k, v in args.items() if v is not None}
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code == "invalid"


def connect(user: str, password: str, host: str, sql: str) -> subprocess.CompletedProcess[str]:
    """The mariadb client as a customer would run it; the password in the environment."""
    return subprocess.run(
        ["mariadb", "-h", host, "-u", user, "--batch", "--skip-column-names", "-e", sql],
        env={**os.environ, "MYSQL_PWD": password},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def db_account(account: Account) -> Iterator[Account]:
    yield account
    found = databases.inventory(account=account.name)
    for name in found["databases"]:
        databases.remove(account=account.name, name=name)
    for user in found["users"]:
        databases.user_remove(account=account.name, user=user)


@pytest.mark.node
def test_ensure_reports_created_only_the_first_time(db_account: Account) -> None:
    name = f"{db_account.name}_shop"
    first = databases.ensure(account=db_account.name, name=name)
    again = databases.ensure(account=db_account.name, name=name)
    assert (first["created"], again["created"]) == (True, False)
    assert databases.inventory(account=db_account.name)["databases"] == [name]
    assert databases.remove(account=db_account.name, name=name)["removed"] is True
    assert databases.remove(account=db_account.name, name=name)["removed"] is False


@pytest.mark.node
def test_a_customer_connects_over_tcp_and_the_socket_with_the_password(
    db_account: Account,
) -> None:
    # given a database and its user
    acct = db_account.name
    databases.ensure(account=acct, name=f"{acct}_shop")
    made = databases.user_ensure(
        account=acct,
        user=f"{acct}_app",
        password_hash=_sql.native_hash("app-password-123"),
        databases=[f"{acct}_shop"],
    )
    assert made["created"] is True

    # when the customer connects over TCP to 127.0.0.1 and over the socket
    sql = f"CREATE TABLE `{acct}_shop`.t (x int); INSERT INTO `{acct}_shop`.t VALUES (7);"  # noqa: S608
    tcp = connect(f"{acct}_app", "app-password-123", "127.0.0.1", sql)
    sock = connect(f"{acct}_app", "app-password-123", "localhost", f"SELECT x FROM `{acct}_shop`.t")  # noqa: S608

    # then both work with the same password, and a wrong one does not
    assert tcp.returncode == 0, tcp.stderr
    assert sock.stdout.strip() == "7", sock.stderr
    assert connect(f"{acct}_app", "wrong-password", "127.0.0.1", "SELECT 1").returncode != 0
    users = databases.inventory(account=acct)["users"]
    assert sorted(users[f"{acct}_app"]) == ["127.0.0.1", "localhost"]

    # when the password changes, then it changes at both hosts
    databases.user_password(
        account=acct, user=f"{acct}_app", password_hash=_sql.native_hash("new-password-456")
    )
    for host in ("127.0.0.1", "localhost"):
        assert connect(f"{acct}_app", "new-password-456", host, "SELECT 1").returncode == 0
        assert connect(f"{acct}_app", "app-password-123", host, "SELECT 1").returncode != 0

    # and removing the user removes both
    databases.user_remove(account=acct, user=f"{acct}_app")
    assert databases.inventory(account=acct)["users"] == {}


@pytest.mark.node
def test_password_change_of_a_missing_user_is_not_found(db_account: Account) -> None:
    with pytest.raises(AgentError) as err:
        databases.user_password(
            account=db_account.name, user=f"{db_account.name}_x", password_hash=HASH
        )
    assert err.value.code == "not_found"


def read_mycnf(account: Account) -> dict[str, str]:
    text = (account.home / ".my.cnf").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.node
def test_account_database_writes_my_cnf_that_works_and_repair_keeps_the_password(
    db_account: Account,
) -> None:
    acct = db_account.name
    first = databases.account_ensure(account=acct, user=acct, name=f"{acct}_main")
    cnf = read_mycnf(db_account)
    st = os.lstat(db_account.home / ".my.cnf")
    assert (st.st_uid, st.st_mode & 0o777) == (db_account.ids()[0], 0o600)
    assert first["created"] is True and cnf["user"] == acct
    assert connect(acct, cnf["password"], "127.0.0.1", "SELECT 1").returncode == 0

    # a repair (the same action again) keeps the password the site uses
    again = databases.account_ensure(account=acct, user=acct, name=f"{acct}_main")
    assert again["created"] is False and again["changed"] is False
    assert read_mycnf(db_account)["password"] == cnf["password"]


PLANTED = [".my.cnf", ".my.cnf.hwtmp.1234"]


@pytest.mark.node
@pytest.mark.parametrize("name", PLANTED)
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_links_planted_at_my_cnf_paths_leave_roots_file_alone(
    db_account: Account, decoy: Decoy, name: str, link: str
) -> None:
    # given a link at ~/.my.cnf (or at the old fixed temporary name) to a file of root's
    before = decoy.state()
    path = db_account.home / name
    if link == "symlink":
        plant_symlink(path, decoy.file)
    else:
        plant_hardlink(path, decoy.file)

    # when root writes the account's credentials
    databases.account_ensure(
        account=db_account.name, user=db_account.name, name=f"{db_account.name}_main"
    )

    # then root's file is untouched, and ~/.my.cnf is a file of the account's own
    assert decoy.state() == before
    st = os.lstat(db_account.home / ".my.cnf")
    assert st.st_uid == db_account.ids()[0] and st.st_nlink == 1
    assert not Path(db_account.home / ".my.cnf").is_symlink()
    assert read_mycnf(db_account)["user"] == db_account.name

    # and removing it removes the entry only
    databases.account_remove(
        account=db_account.name, user=db_account.name, name=f"{db_account.name}_main"
    )
    assert decoy.state() == before
