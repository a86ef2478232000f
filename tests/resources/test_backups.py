"""Backups of an account's files and databases on the node: report, verify, restore, prune."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from provisioning.resources import backups
from provisioning.resources import databases as hwdb
from provisioning.resources.errors import ResourceRefused

from .conftest import run_on_node

pytestmark = pytest.mark.node


def sql(statement: str) -> str:
    result = subprocess.run(
        ["mariadb", "-N", "-B", "-e", statement], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def site(mariadb_node, tmp_path):
    """An account with a home (under a temporary root) and a database with one row."""
    account = f"bk{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    (home / account / "public_html").mkdir(parents=True)
    (home / account / "public_html" / "index.html").write_text("original page\n")
    run_on_node(hwdb.database_create_script(account=account, name="shop"))
    table = f"`{account}_shop`.t"
    sql(f"CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (1);")  # noqa: S608
    yield account, home
    run_on_node(hwdb.database_delete_script(account=account, name="shop"))
    shutil.rmtree(Path(backups.BACKUP_ROOT) / account, ignore_errors=True)


def test_backup_verify_and_restore_bring_back_files_and_database(site):
    account, home = site
    # given a backup of the account
    created = run_on_node(
        backups.backup_create_script(
            account=account,
            backup_id="20261122T210000Z",
            databases=["shop"],
            home_root=str(home),
        )
    )
    report = backups.parse_report(created.stdout)
    assert [(r.component, r.ok) for r in report] == [("files", True), (f"db:{account}_shop", True)]
    assert all(r.bytes > 0 for r in report)
    assert (
        "verified"
        in run_on_node(
            backups.backup_verify_script(account=account, backup_id="20261122T210000Z")
        ).stdout
    )
    # no scratch database is left behind by the verification
    assert sql(f"SHOW DATABASES LIKE '{account}_hwverify'") == ""

    # when the site and its data are damaged
    (home / account / "public_html" / "index.html").write_text("defaced\n")
    table = f"`{account}_shop`.t"
    sql(f"DELETE FROM {table}; INSERT INTO {table} VALUES (99);")  # noqa: S608

    # and the backup is restored
    restored = run_on_node(
        backups.backup_restore_script(
            account=account, backup_id="20261122T210000Z", home_root=str(home)
        )
    )

    # then files and rows are back as they were
    assert "restored" in restored.stdout
    assert (home / account / "public_html" / "index.html").read_text() == "original page\n"
    assert sql(f"SELECT x FROM {table}") == "1"  # noqa: S608


def test_a_failing_component_is_reported_and_fails_the_backup(site):
    account, home = site
    # when a database that does not exist is part of the backup
    result = run_on_node(
        backups.backup_create_script(
            account=account,
            backup_id="20261122T211500Z",
            databases=["shop", "missing"],
            home_root=str(home),
        ),
        check=False,
    )

    # then the script fails, and the report says which component failed and why
    assert result.returncode != 0
    report = {r.component: r for r in backups.parse_report(result.stdout)}
    assert report["files"].ok and report[f"db:{account}_shop"].ok
    assert not report[f"db:{account}_missing"].ok
    assert "missing" in report[f"db:{account}_missing"].error


def test_a_tampered_backup_does_not_verify_or_restore(site):
    account, home = site
    run_on_node(
        backups.backup_create_script(
            account=account, backup_id="20261122T212000Z", databases=["shop"], home_root=str(home)
        )
    )
    # given a dump altered after the backup
    dump = Path(backups.backup_dir(account, "20261122T212000Z")) / f"db-{account}_shop.sql.gz"
    dump.write_bytes(dump.read_bytes() + b"junk")
    (home / account / "public_html" / "index.html").write_text("current\n")

    # then verification and restore both refuse, and nothing was overwritten
    assert (
        run_on_node(
            backups.backup_verify_script(account=account, backup_id="20261122T212000Z"), check=False
        ).returncode
        != 0
    )
    assert (
        run_on_node(
            backups.backup_restore_script(
                account=account, backup_id="20261122T212000Z", home_root=str(home)
            ),
            check=False,
        ).returncode
        != 0
    )
    assert (home / account / "public_html" / "index.html").read_text() == "current\n"


def test_prune_keeps_the_newest(site):
    account, home = site
    ids = [f"2026112{d}T000000Z" for d in range(1, 5)]
    for backup_id in ids:
        run_on_node(
            backups.backup_create_script(
                account=account, backup_id=backup_id, databases=[], home_root=str(home)
            )
        )
    kept = run_on_node(backups.backup_prune_script(account=account, keep=2)).stdout.split()
    assert kept == ids[2:]


@pytest.mark.parametrize("backup_id", ["../x", "2026", "20261122T210000Z;rm", ""])
def test_bad_backup_ids_are_refused(backup_id):
    with pytest.raises(ResourceRefused):
        backups.backup_verify_script(account="alice", backup_id=backup_id)


def test_report_lines_are_json():
    line = '{"component": "files", "ok": true, "bytes": 12, "error": ""}'
    assert backups.parse_report("noise\n" + line) == [
        backups.ComponentResult(component="files", ok=True, bytes=12, error="")
    ]
    json.loads(line)
