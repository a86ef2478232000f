"""backup.* actions: validation, then backup and restore of a real account on this node."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Decoy, plant_hardlink, plant_symlink
from hwagent import _sql, backups, databases
from hwagent.errors import AgentError

ID = "20261122T210000Z"

BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (backups.create, {"account": "alice", "backup_id": "../x"}),
    (backups.create, {"account": "alice", "backup_id": "2026"}),
    (backups.create, {"account": "alice", "backup_id": ID + ";rm"}),
    (backups.create, {"account": "Alice!", "backup_id": ID}),
    (backups.create, {"account": "alice", "backup_id": ID, "keep": 0}),
    (backups.create, {"account": "alice", "backup_id": ID, "keep": 1000}),
    (backups.create, {"account": "alice", "backup_id": ID, "databases": ["bob_shop"]}),
    (backups.create, {"account": "alice", "backup_id": ID, "databases": ["alice_`x`"]}),
    (backups.verify, {"account": "alice", "backup_id": ""}),
    (backups.restore, {"account": "alice", "backup_id": "20261122T210000Z/../../x"}),
    (backups.restore, {"account": "root", "backup_id": ID}),
    (backups.remove, {"account": "alice", "backup_id": "*"}),
    (backups.prune, {"account": "alice", "keep": 0}),
    (backups.prune, {"account": "alice", "keep": True}),
    (backups.list_backups, {"account": "a"}),
    (backups.remove_all, {"account": "../home"}),
]  # fmt: skip


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_backup_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code in ("invalid", "not_found")


@pytest.fixture
def site(account: Account) -> Iterator[Account]:
    """An account with a page and a database holding one row."""
    (account.docroot / "index.html").write_text("original page\n")
    name = f"{account.name}_shop"
    databases.ensure(account=account.name, name=name)
    _sql.run(f"CREATE TABLE `{name}`.t (x int); INSERT INTO `{name}`.t VALUES (1);")  # noqa: S608
    yield account
    for db in databases.inventory(account=account.name)["databases"]:
        databases.remove(account=account.name, name=db)
    backups.remove_all(account=account.name)


def rows(account: Account) -> str:
    return _sql.run(f"SELECT x FROM `{account.name}_shop`.t").strip()  # noqa: S608


@pytest.mark.node
def test_restore_brings_back_files_and_rows_and_removes_later_files(site: Account) -> None:
    # given a verified backup, kept in a folder only root can read
    made = backups.create(account=site.name, backup_id=ID, keep=3)
    assert made["verified"] is True
    assert [(r["component"], r["ok"]) for r in made["report"]] == [
        ("files", True),
        (f"db:{site.name}_shop", True),
    ]
    folder = Path(backups.BACKUP_ROOT) / site.name / ID
    assert stat.S_IMODE(os.lstat(backups.BACKUP_ROOT).st_mode) == 0o700
    assert not str(folder).startswith(str(site.home))

    # when the site is damaged and the customer adds files after the backup
    (site.docroot / "index.html").write_text("defaced\n")
    (site.docroot / "later.php").write_text("<?php // added later")
    (site.home / "newdir").mkdir()
    (site.home / "newdir" / "x").write_text("x")
    for path in (site.docroot / "later.php", site.home / "newdir", site.home / "newdir" / "x"):
        site.chown(path)
    _sql.run(f"DELETE FROM `{site.name}_shop`.t; INSERT INTO `{site.name}_shop`.t VALUES (99);")  # noqa: S608

    # and the backup is restored
    restored = backups.restore(account=site.name, backup_id=ID)

    # then the files are exactly those of the backup, and the rows are back
    assert restored["databases"] == [f"{site.name}_shop"]
    assert (site.docroot / "index.html").read_text() == "original page\n"
    assert not (site.docroot / "later.php").exists()
    assert not (site.home / "newdir").exists()
    assert rows(site) == "1"
    # and what came back belongs to the account
    assert os.lstat(site.docroot / "index.html").st_uid == site.ids()[0]
    assert not [n for n in os.listdir(site.home) if n.startswith(".hw-restore-")]


@pytest.mark.node
def test_a_tampered_backup_neither_verifies_nor_restores(site: Account) -> None:
    backups.create(account=site.name, backup_id=ID)
    dump = Path(backups.BACKUP_ROOT) / site.name / ID / f"db-{site.name}_shop.sql.gz"
    dump.write_bytes(dump.read_bytes() + b"junk")
    (site.docroot / "index.html").write_text("current\n")
    for action in (backups.verify, backups.restore):
        with pytest.raises(AgentError) as err:
            action(account=site.name, backup_id=ID)
        assert err.value.code == "backup_damaged"
    assert (site.docroot / "index.html").read_text() == "current\n"


@pytest.mark.node
def test_a_failing_component_fails_the_backup_naming_it(site: Account) -> None:
    with pytest.raises(AgentError) as err:
        backups.create(
            account=site.name, backup_id=ID, databases=[f"{site.name}_shop", f"{site.name}_gone"]
        )
    assert err.value.code == "backup_failed"
    assert f"db:{site.name}_gone" in err.value.message
    assert f"db:{site.name}_shop" not in err.value.message


@pytest.mark.node
def test_prune_keeps_the_newest(site: Account) -> None:
    ids = [f"2026112{d}T000000Z" for d in range(1, 5)]
    for backup_id in ids:
        backups.create(account=site.name, backup_id=backup_id, databases=[])
    assert backups.prune(account=site.name, keep=2)["kept"] == ids[2:]
    assert [b["id"] for b in backups.list_backups(account=site.name)["backups"]] == ids[2:]


@pytest.mark.node
def test_files_the_account_cannot_read_are_not_in_its_backup(site: Account, decoy: Decoy) -> None:
    # given a symbolic link in the home to a file of root's
    plant_symlink(site.docroot / "secret", decoy.file)
    backups.create(account=site.name, backup_id=ID, databases=[])
    # then the archive holds the link, not root's file
    archive = Path(backups.BACKUP_ROOT) / site.name / ID / "files.tar.gz"
    assert b"root's secret" not in gzip.decompress(archive.read_bytes())


@pytest.mark.node
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_links_planted_at_restore_targets_leave_roots_files_alone(
    site: Account, decoy: Decoy, link: str
) -> None:
    # given a backup, then links planted where the restore writes
    backups.create(account=site.name, backup_id=ID, databases=[])
    before = decoy.state()
    if link == "symlink":
        # the docroot itself becomes a link to a folder of root's
        plant_symlink(site.docroot, decoy.folder)
        plant_symlink(site.home / "tmp", decoy.folder)
    else:
        plant_hardlink(site.docroot / "index.html", decoy.file)

    # when the backup is restored
    backups.restore(account=site.name, backup_id=ID)

    # then root's file and folder are untouched, and the home is the backup's again
    assert decoy.state() == before
    assert not site.docroot.is_symlink() and site.docroot.is_dir()
    assert (site.docroot / "index.html").read_text() == "original page\n"
    assert os.lstat(site.docroot / "index.html").st_nlink == 1


@pytest.mark.node
def test_restore_of_a_missing_backup_is_not_found(site: Account) -> None:
    with pytest.raises(AgentError) as err:
        backups.restore(account=site.name, backup_id="20990101T000000Z")
    assert err.value.code == "not_found"
    shutil.rmtree(Path(backups.BACKUP_ROOT) / site.name, ignore_errors=True)
