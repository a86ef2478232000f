"""MariaDB databases and users on the node (through the node agent's ``db.*`` actions): the
customer's credentials work there, over the socket and over TCP."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid

import pytest
from hwagent import databases as agent_db
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import databases as hwdb


def as_customer(
    user: str, password: str, sql: str, host: str = "localhost"
) -> subprocess.CompletedProcess[str]:
    """The mariadb client as the customer, password in the environment (not in argv)."""
    return subprocess.run(
        ["mariadb", "-h", host, "-u", user, "--batch", "--skip-column-names", "-e", sql],
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
    found = agent_db.inventory(account=name)
    for db in found["databases"]:
        agent_db.remove(account=name, name=db)
    for user in found["users"]:
        agent_db.user_remove(account=name, user=user)


def user_ensure(account: str, user: str, password: str, databases: list[str]) -> dict:
    return agent_db.user_ensure(
        account=account,
        user=hwdb.validate_db_name(user, account=account),
        password_hash=hwdb.native_password_hash(password),
        databases=[hwdb.validate_db_name(d, account=account) for d in databases],
    )


def db_ensure(account: str, name: str) -> dict:
    return agent_db.ensure(account=account, name=hwdb.validate_db_name(name, account=account))


@pytest.mark.node
def test_customer_credentials_work_on_the_node(account):
    # given a database and a user granted on it
    password = "s3cret-Pass-word"
    db_ensure(account, "shop")
    user_ensure(account, "app", password, ["shop"])

    # when the customer connects with their credentials and uses the database
    db = f"`{account}_shop`"
    sql = f"CREATE TABLE {db}.t (x int); INSERT INTO {db}.t VALUES (42); SELECT x FROM {db}.t;"  # noqa: S608

    # then it works over the socket and over TCP to 127.0.0.1 with the same password
    result = as_customer(f"{account}_app", password, sql)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    tcp = as_customer(f"{account}_app", password, f"SELECT x FROM {db}.t", host="127.0.0.1")  # noqa: S608
    assert tcp.stdout.strip() == "42", tcp.stderr
    # and the database is listed under the account's prefix
    assert agent_db.inventory(account=account)["databases"] == [f"{account}_shop"]


@pytest.mark.node
def test_user_cannot_reach_other_databases(account):
    db_ensure(account, "one")
    db_ensure(account, "two")
    user_ensure(account, "app", "p4ssword-long", ["one"])
    for host in ("localhost", "127.0.0.1"):
        result = as_customer(f"{account}_app", "p4ssword-long", f"USE `{account}_two`;", host)
        assert result.returncode != 0
        assert "denied" in result.stderr


@pytest.mark.node
def test_password_change_and_delete_are_effective_and_repeatable(account):
    # given a user (made twice: a retried step changes nothing)
    db_ensure(account, "db")
    first = user_ensure(account, "app", "old-password-1", ["db"])
    again = user_ensure(account, "app", "old-password-1", ["db"])
    assert (first["created"], again["created"]) == (True, False)

    # when the password changes
    agent_db.user_password(
        account=account,
        user=f"{account}_app",
        password_hash=hwdb.native_password_hash("new-password-2"),
    )

    # then only the new one works
    assert as_customer(f"{account}_app", "new-password-2", "SELECT 1").returncode == 0
    assert as_customer(f"{account}_app", "old-password-1", "SELECT 1").returncode != 0

    # and after deleting user and database (twice each) nothing is left
    for _ in range(2):
        agent_db.user_remove(account=account, user=f"{account}_app")
        agent_db.remove(account=account, name=f"{account}_db")
    assert as_customer(f"{account}_app", "new-password-2", "SELECT 1").returncode != 0
    assert agent_db.inventory(account=account) == {"changed": False, "databases": [], "users": {}}


@pytest.mark.node
def test_password_change_for_a_missing_user_fails(account):
    with pytest.raises(AgentError) as err:
        agent_db.user_password(
            account=account,
            user=f"{account}_other",
            password_hash=hwdb.native_password_hash("whatever-123"),
        )
    assert err.value.code == "not_found"


@pytest.mark.parametrize(
    "name", ["", "a-b", "x;drop", "`x`", "../x", "a b", "x" * 33, "Ünï", "db'--"]
)
def test_bad_database_names_are_refused(name):
    with pytest.raises(ProvisioningRefused):
        hwdb.validate_db_name(name, account="alice")


def test_names_are_prefixed_with_the_account():
    assert hwdb.validate_db_name("alice_blog", account="alice") == "alice_blog"
    assert hwdb.validate_db_name("Shop", account="alice") == "alice_shop"


def test_the_password_never_reaches_the_node_only_its_hash():
    password = "very-secret-password"
    password_hash = hwdb.native_password_hash(password)
    assert password not in password_hash and password_hash.startswith("*")


def test_native_hash_matches_mariadb():
    # MariaDB: SELECT PASSWORD('hostwright-test') = '*7D4A7D7E...'; computed independently
    # from the documented algorithm: '*' + upper(hex(sha1(sha1(password))))
    inner = hashlib.sha1(b"hostwright-test").digest()  # noqa: S324 (MariaDB's algorithm)
    expected = "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324
    assert hwdb.native_password_hash("hostwright-test") == expected


def test_over_the_plan_limit_is_refused_naming_the_limit():
    with pytest.raises(ProvisioningRefused, match="Your plan allows 2 databases"):
        hwdb.check_database_limit(used=2, allowed=2)
    hwdb.check_database_limit(used=1, allowed=2)
