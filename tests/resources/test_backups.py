"""Backups of an account's files and databases on the node, through the node agent's
``backup.*`` actions: report, verify, restore exactly, prune; and the panel's checks."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hwagent import _sql
from hwagent import backups as agent_backups
from hwagent import databases as agent_db
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import backups

ID = "20261122T210000Z"


def sql(statement: str) -> str:
    return _sql.run(statement).strip()


@pytest.fixture
def site(mariadb_node):
    """A Linux account with a page in its docroot and a database with one row."""
    account = f"bk{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--user-group", account], check=True)
    home = Path(f"/home/{account}")
    (home / "public_html").mkdir()
    (home / "public_html" / "index.html").write_text("original page\n")
    pw = pwd.getpwnam(account)
    for path in (home / "public_html", home / "public_html" / "index.html"):
        shutil.chown(path, pw.pw_uid, pw.pw_gid)
    agent_db.ensure(account=account, name=f"{account}_shop")
    table = f"`{account}_shop`.t"
    sql(f"CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (1);")  # noqa: S608
    yield account, home
    agent_db.remove(account=account, name=f"{account}_shop")
    agent_backups.remove_all(account=account)
    subprocess.run(["userdel", account], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.node
def test_backup_verify_and_restore_bring_back_files_and_database(site):
    account, home = site
    # given a backup of the account, reported per component and verified
    created = agent_backups.create(account=account, backup_id=ID)
    assert [(r["component"], r["ok"]) for r in created["report"]] == [
        ("files", True),
        (f"db:{account}_shop", True),
    ]
    assert all(r["bytes"] > 0 for r in created["report"])
    assert agent_backups.verify(account=account, backup_id=ID)["verified"] is True
    # no scratch database is left behind by the verification
    assert sql(f"SHOW DATABASES LIKE '{account}_hwverify'") == ""

    # when the site and its data are damaged, and a file is added
    (home / "public_html" / "index.html").write_text("defaced\n")
    (home / "public_html" / "added.php").write_text("<?php // later")
    shutil.chown(home / "public_html" / "added.php", account, account)
    table = f"`{account}_shop`.t"
    sql(f"DELETE FROM {table}; INSERT INTO {table} VALUES (99);")  # noqa: S608

    # and the backup is restored
    agent_backups.restore(account=account, backup_id=ID)

    # then files and rows are exactly as they were: the added file is gone
    assert (home / "public_html" / "index.html").read_text() == "original page\n"
    assert not (home / "public_html" / "added.php").exists()
    assert sql(f"SELECT x FROM {table}") == "1"  # noqa: S608


@pytest.mark.node
def test_a_tampered_backup_does_not_verify_or_restore(site):
    account, home = site
    agent_backups.create(account=account, backup_id=ID)
    dump = Path(agent_backups.BACKUP_ROOT) / account / ID / f"db-{account}_shop.sql.gz"
    dump.write_bytes(dump.read_bytes() + b"junk")
    (home / "public_html" / "index.html").write_text("current\n")
    for action in (agent_backups.verify, agent_backups.restore):
        with pytest.raises(AgentError):
            action(account=account, backup_id=ID)
    assert (home / "public_html" / "index.html").read_text() == "current\n"


@pytest.mark.node
def test_prune_keeps_the_newest(site):
    account, _ = site
    ids = [f"2026112{d}T000000Z" for d in range(1, 5)]
    for backup_id in ids:
        agent_backups.create(account=account, backup_id=backup_id, databases=[])
    assert agent_backups.prune(account=account, keep=2)["kept"] == ids[2:]


@pytest.mark.parametrize("backup_id", ["../x", "2026", "20261122T210000Z;rm", ""])
def test_bad_backup_ids_are_refused(backup_id):
    with pytest.raises(ProvisioningRefused):
        backups.validate_backup_id(backup_id)
    with pytest.raises(AgentError):
        agent_backups.verify(account="alice", backup_id=backup_id)


@pytest.mark.parametrize("keep", [0, 91, True])
def test_keeping_too_few_or_too_many_is_refused(keep):
    with pytest.raises(ProvisioningRefused):
        backups.validate_keep(keep)
