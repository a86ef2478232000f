"""move.* actions: validation, then an account packed, carried chunk by chunk and unpacked.

On one machine the old and the new node are the same: the package is carried from one move id
to another, the account is damaged in between, and unpacking brings back exactly what was
packed (files, rows, database users with their password hashes, ``~/.my.cnf``, mail).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Account
from hwagent import _sql, backups, databases, mail, moves, sftp, system, users
from hwagent.errors import AgentError

BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (moves.pack, {"account": "alice", "move_id": "../x", "domain": "a.test"}),
    (moves.pack, {"account": "alice", "move_id": "op1", "domain": "a..test"}),
    (moves.pack, {"account": "Alice!", "move_id": "op1", "domain": "a.test"}),
    (moves.read, {"account": "alice", "move_id": "op1", "name": "../etc/passwd", "offset": 0}),
    (moves.read, {"account": "alice", "move_id": "op1", "name": "files.tar.gz", "offset": -1}),
    (moves.write, {"account": "alice", "move_id": "op1", "name": "x.sh", "offset": 0, "data": ""}),
    (moves.write, {"account": "alice", "move_id": "op1", "name": "SHA256SUMS", "offset": 0,
                   "data": "not base64!"}),
    (moves.unpack, {"account": "root", "move_id": "op/1"}),
    (moves.discard, {"account": "alice", "move_id": "*"}),
]  # fmt: skip


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_move_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code in ("invalid", "not_found")


HASH = databases._sql.native_hash("the site's password")


@pytest.fixture
def site(account: Account) -> Iterator[Account]:
    """An account with a page, a database holding one row, a database user and ~/.my.cnf."""
    (account.docroot / "index.html").write_text("moved page\n")
    name = f"{account.name}_main"
    databases.ensure(account=account.name, name=name)
    _sql.run(f"CREATE TABLE `{name}`.t (x int); INSERT INTO `{name}`.t VALUES (7);")  # noqa: S608
    databases.user_ensure(account=account.name, user=account.name, password_hash=HASH,
                          databases=[name])  # fmt: skip
    mycnf = account.home / ".my.cnf"
    mycnf.write_text(f"[client]\nuser={account.name}\npassword=the site's\ndatabase={name}\n")
    os.chown(mycnf, 0, account.ids()[1])
    mycnf.chmod(0o640)
    yield account
    for db in databases.inventory(account=account.name)["databases"]:
        databases.remove(account=account.name, name=db)
    databases.user_remove(account=account.name, user=account.name)
    for move_id in ("op1", "op2"):
        moves.discard(account=account.name, move_id=move_id)


def carry(account: str, source: str, target: str, files: list[dict[str, Any]]) -> None:
    """What the worker does: read each file in chunks on one node, write them on the other."""
    for entry in files:
        offset = 0
        while True:
            chunk = moves.read(account=account, move_id=source, name=entry["name"], offset=offset)
            offset = moves.write(account=account, move_id=target, name=entry["name"],
                                 offset=offset, data=chunk["data"])["size"]  # fmt: skip
            if chunk["eof"]:
                break
        assert offset == entry["size"]


def db_rows(account: Account) -> str:
    return _sql.run(f"SELECT x FROM `{account.name}_main`.t").strip()  # noqa: S608


@pytest.mark.node
def test_a_carried_package_brings_the_account_back_exactly(site: Account) -> None:
    # given the account packed on the "old node", in a folder only root can read
    packed = moves.pack(account=site.name, move_id="op1", domain="nomail-move.invalid")
    names = [f["name"] for f in packed["files"]]
    assert names == ["account.json", f"db-{site.name}_main.sql.gz", "files.tar.gz", "SHA256SUMS"]
    folder = Path(moves.MOVE_ROOT) / site.name / "op1"
    assert os.stat(moves.MOVE_ROOT).st_mode & 0o077 == 0
    assert not str(folder).startswith(str(site.home))
    # and carried chunk by chunk to the "new node"
    carry(site.name, "op1", "op2", packed["files"])

    # when the account changes meanwhile and loses its database user
    (site.docroot / "index.html").write_text("changed\n")
    (site.docroot / "later.html").write_text("later\n")
    site.chown(site.docroot / "later.html")
    _sql.run(f"DELETE FROM `{site.name}_main`.t;")  # noqa: S608
    databases.user_remove(account=site.name, user=site.name)
    (site.home / ".my.cnf").unlink()
    # and the carried package is unpacked
    unpacked = moves.unpack(account=site.name, move_id="op2")

    # then files, rows, the user with its password hash and ~/.my.cnf are what was packed
    assert unpacked["databases"] == [f"{site.name}_main"]
    assert unpacked["db_users"] == [site.name]
    assert (site.docroot / "index.html").read_text() == "moved page\n"
    assert not (site.docroot / "later.html").exists()
    assert db_rows(site) == "7"
    hosts = _sql.rows(
        f"SELECT host, authentication_string FROM mysql.user WHERE user = '{site.name}'"  # noqa: S608
    )
    assert sorted(hosts) == [["127.0.0.1", HASH], ["localhost", HASH]]
    mycnf = site.home / ".my.cnf"
    assert "password=the site's" in mycnf.read_text()
    assert (os.stat(mycnf).st_uid, os.stat(mycnf).st_mode & 0o777) == (0, 0o640)
    # and discarding the packages leaves nothing of the move
    moves.discard(account=site.name, move_id="op1")
    moves.discard(account=site.name, move_id="op2")
    assert not (Path(moves.MOVE_ROOT) / site.name).exists()
    assert moves.packages(account=site.name)["packages"] == []


@pytest.mark.node
def test_a_damaged_package_changes_nothing(site: Account) -> None:
    packed = moves.pack(account=site.name, move_id="op1", domain="nomail-move.invalid")
    carry(site.name, "op1", "op2", packed["files"])
    archive = Path(moves.MOVE_ROOT) / site.name / "op2" / "files.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"junk")
    (site.docroot / "index.html").write_text("current\n")
    with pytest.raises(AgentError) as err:
        moves.unpack(account=site.name, move_id="op2")
    assert err.value.code == "move_failed"
    assert (site.docroot / "index.html").read_text() == "current\n"


@pytest.mark.node
def test_a_chunk_out_of_order_is_refused(site: Account) -> None:
    moves.pack(account=site.name, move_id="op1", domain="nomail-move.invalid")
    chunk = base64.b64encode(b"abc").decode()
    moves.write(account=site.name, move_id="op2", name="files.tar.gz", offset=0, data=chunk)
    with pytest.raises(AgentError) as err:
        moves.write(account=site.name, move_id="op2", name="files.tar.gz", offset=10, data=chunk)
    assert err.value.code == "conflict"


@pytest.fixture
def mail_domain(site: Account) -> Iterator[str]:
    if not os.path.isdir(mail.VHOSTS):
        pytest.skip("this node has no mail server")
    domain = f"mv{uuid.uuid4().hex[:8]}.test"
    mail.domain_ensure(domain=domain, account=site.name)
    yield domain
    mail.domain_remove(domain=domain, purge=True)


@pytest.mark.node
def test_mail_travels_with_the_package(site: Account, mail_domain: str) -> None:
    # given a mailbox holding a message, a forwarder and a DKIM key for the domain
    pw = "{BLF-CRYPT}$2y$05$" + "a" * 53
    mail.mailbox_ensure(address=f"box@{mail_domain}", password_hash=pw, quota_mb=50)
    mail.forwarder_set(source=f"fw@{mail_domain}", targets=["someone@example.org"])
    mail.dkim_key(domain=mail_domain, selector="hw1")
    mail.dkim_activate(domain=mail_domain, selector="hw1")
    new = Path(mail.VHOSTS) / mail_domain / "box" / "Maildir" / "new"
    new.mkdir(parents=True)
    (new / "1.msg").write_text("Subject: hello\n\nmoved mail\n")
    for path in (new.parent, new, new / "1.msg"):
        os.chown(path, *mail._vmail())
    packed = moves.pack(account=site.name, move_id="op1", domain=mail_domain)
    assert packed["mail"] and packed["mailboxes"] == 1
    carry(site.name, "op1", "op2", packed["files"])

    # when the domain disappears from the node with its mail
    mail.domain_remove(domain=mail_domain, purge=True)
    assert mail.mailbox_list(domain=mail_domain)["mailboxes"] == []
    # and the package is unpacked
    moves.unpack(account=site.name, move_id="op2")

    # then the mailbox, the forwarder, the DKIM key and the message are back
    assert mail.mailbox_list(domain=mail_domain)["mailboxes"] == [f"box@{mail_domain}"]
    assert f"fw@{mail_domain} someone@example.org" in mail._lines(f"{mail.MAIL_ETC}/aliases")
    assert Path(mail.DKIM_DIR, mail_domain, "hw1.private").is_file()
    assert (new / "1.msg").read_text().endswith("moved mail\n")
    assert os.stat(new / "1.msg").st_uid == mail._vmail()[0]


@pytest.mark.node
def test_backups_travel_with_the_package(site: Account) -> None:
    backup_id = "20261122T210000Z"
    backups.create(account=site.name, backup_id=backup_id)
    try:
        packed = moves.pack(account=site.name, move_id="op1", domain="nomail-move.invalid")
        assert "backups.tar.gz" in [f["name"] for f in packed["files"]]
        carry(site.name, "op1", "op2", packed["files"])
        backups.remove_all(account=site.name)
        moves.unpack(account=site.name, move_id="op2")
        assert [b["id"] for b in backups.list_backups(account=site.name)["backups"]] == [backup_id]
        backups.verify(account=site.name, backup_id=backup_id)
    finally:
        backups.remove_all(account=site.name)


@pytest.mark.node
def test_sftp_access_travels_with_the_package(site: Account) -> None:
    # given an account let in over SFTP with a password hash and a key
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlq2Fv0Sx2fK3m7zVYvQ3jUoVbxD3b2cQq9uF1oA2aX mover"
    pw_hash = "$2b$05$" + "b" * 53
    users.set_membership(site.name, sftp.GROUP, True)
    system.run(["chpasswd", "-e"], input=f"{site.name}:{pw_hash}\n".encode())
    os.makedirs(sftp.KEYS_DIR, mode=0o755, exist_ok=True)
    system.replace_file(f"{sftp.KEYS_DIR}/{site.name}", key + "\n")
    try:
        packed = moves.pack(account=site.name, move_id="op1", domain="nomail-move.invalid")
        carry(site.name, "op1", "op2", packed["files"])
        # when the access is taken away, and the package unpacked
        sftp.disable(user=site.name)
        assert moves.unpack(account=site.name, move_id="op2")["sftp"] is True
        # then the account is let in again with the same password and key
        assert site.name in users._group_members(sftp.GROUP)
        assert Path(sftp.KEYS_DIR, site.name).read_text() == key + "\n"
        shadow = next(
            line for line in Path("/etc/shadow").read_text().splitlines()
            if line.startswith(site.name + ":")
        )  # fmt: skip
        assert shadow.split(":")[1] == pw_hash
    finally:
        sftp.disable(user=site.name)


@pytest.mark.node
def test_the_final_package_holds_only_what_changes_while_frozen(site: Account) -> None:
    backups.create(account=site.name, backup_id="20261122T210000Z")
    try:
        packed = moves.pack(
            account=site.name, move_id="op1", domain="nomail-move.invalid", final=True
        )
        names = [f["name"] for f in packed["files"]]
        assert "backups.tar.gz" not in names and "files.tar.gz" in names
        assert f"db-{site.name}_main.sql.gz" in names
        carry(site.name, "op1", "op2", packed["files"])
        (site.docroot / "index.html").write_text("changed\n")
        assert moves.unpack(account=site.name, move_id="op2")["sftp"] is False
        assert (site.docroot / "index.html").read_text() == "moved page\n"
    finally:
        backups.remove_all(account=site.name)
