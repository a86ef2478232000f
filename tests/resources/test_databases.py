"""MariaDB databases and users on the node: the customer's credentials work there."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid

import pytest

from provisioning.resources import databases as hwdb
from provisioning.resources.errors import ResourceRefused

from .conftest import run_on_node


def as_customer(user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    """The mariadb client as the customer, password in the environment (not in argv)."""
    return subprocess.run(
        ["mariadb", "-h", "localhost", "-u", user, "--batch", "--skip-column-names", "-e", sql],
        env={**os.environ, "MYSQL_PWD": password},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def account(mariadb_node):
    name = f"u{uuid.uuid4().hex[:8]}"
    yield name
    # remove whatever the test left
    listing = run_on_node(hwdb.account_databases_query_script(account=name)).stdout.split()
    for db in listing:
        run_on_node(hwdb.database_delete_script(account=name, name=db))
    for user in ("app", "other"):
        run_on_node(hwdb.db_user_delete_script(account=name, user=user))


@pytest.mark.node
def test_customer_credentials_work_on_the_node(account):
    # given a database and a user granted on it
    password = "s3cret-Pass-word"
    run_on_node(hwdb.database_create_script(account=account, name="shop"))
    run_on_node(
        hwdb.db_user_create_script(
            account=account,
            user="app",
            password_hash=hwdb.native_password_hash(password),
            databases=["shop"],
        )
    )

    # when the customer connects with their credentials and uses the database
    db = f"`{account}_shop`"
    sql = f"CREATE TABLE {db}.t (x int); INSERT INTO {db}.t VALUES (42); SELECT x FROM {db}.t;"  # noqa: S608
    result = as_customer(f"{account}_app", password, sql)

    # then it works, and the database is listed under the account's prefix
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    listing = run_on_node(hwdb.account_databases_query_script(account=account)).stdout.split()
    assert listing == [f"{account}_shop"]


@pytest.mark.node
def test_user_cannot_reach_other_databases(account):
    # given two databases and a user granted on one of them
    run_on_node(hwdb.database_create_script(account=account, name="one"))
    run_on_node(hwdb.database_create_script(account=account, name="two"))
    run_on_node(
        hwdb.db_user_create_script(
            account=account,
            user="app",
            password_hash=hwdb.native_password_hash("p4ssword-long"),
            databases=["one"],
        )
    )

    # when it tries the other one, then access is denied
    result = as_customer(f"{account}_app", "p4ssword-long", f"USE `{account}_two`;")
    assert result.returncode != 0
    assert "denied" in result.stderr


@pytest.mark.node
def test_password_change_and_delete_are_effective_and_repeatable(account):
    # given a user
    run_on_node(hwdb.database_create_script(account=account, name="db"))
    create = hwdb.db_user_create_script(
        account=account,
        user="app",
        password_hash=hwdb.native_password_hash("old-password-1"),
        databases=["db"],
    )
    run_on_node(create)
    run_on_node(create)  # a retried step changes nothing

    # when the password changes
    run_on_node(
        hwdb.db_user_password_script(
            account=account, user="app", password_hash=hwdb.native_password_hash("new-password-2")
        )
    )

    # then only the new one works
    assert as_customer(f"{account}_app", "new-password-2", "SELECT 1").returncode == 0
    assert as_customer(f"{account}_app", "old-password-1", "SELECT 1").returncode != 0

    # and after deleting user and database (twice each) nothing is left
    for _ in range(2):
        run_on_node(hwdb.db_user_delete_script(account=account, user="app"))
        run_on_node(hwdb.database_delete_script(account=account, name="db"))
    assert as_customer(f"{account}_app", "new-password-2", "SELECT 1").returncode != 0
    assert run_on_node(hwdb.account_databases_query_script(account=account)).stdout == ""


@pytest.mark.node
def test_password_change_for_a_missing_user_fails(account):
    result = run_on_node(
        hwdb.db_user_password_script(
            account=account, user="other", password_hash=hwdb.native_password_hash("whatever-123")
        ),
        check=False,
    )
    assert result.returncode != 0


@pytest.mark.parametrize(
    "name", ["", "a-b", "x;drop", "`x`", "../x", "a b", "x" * 33, "Ünï", "db'--"]
)
def test_bad_database_names_are_refused(name):
    with pytest.raises(ResourceRefused):
        hwdb.database_create_script(account="alice", name=name)


def test_names_are_prefixed_with_the_account():
    script = hwdb.database_create_script(account="alice", name="alice_blog")
    assert "`alice_blog`" in script.script
    assert "`alice_alice_blog`" not in script.script
    assert "`alice_shop`" in hwdb.database_create_script(account="alice", name="Shop").script


def test_the_password_never_reaches_the_node_and_its_hash_is_hidden_in_logs():
    password = "very-secret-password"
    password_hash = hwdb.native_password_hash(password)
    script = hwdb.db_user_create_script(account="alice", user="app", password_hash=password_hash)
    assert password not in script.script
    assert password_hash not in script.for_log()


def test_native_hash_matches_mariadb():
    # MariaDB: SELECT PASSWORD('hostwright-test') = '*7D4A7D7E...'; computed independently
    # from the documented algorithm: '*' + upper(hex(sha1(sha1(password))))
    inner = hashlib.sha1(b"hostwright-test").digest()  # noqa: S324 (MariaDB's algorithm)
    expected = "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324
    assert hwdb.native_password_hash("hostwright-test") == expected


def test_over_the_plan_limit_is_refused_naming_the_limit():
    with pytest.raises(ResourceRefused, match="Your plan allows 2 databases"):
        hwdb.check_database_limit(used=2, allowed=2)
    hwdb.check_database_limit(used=1, allowed=2)
