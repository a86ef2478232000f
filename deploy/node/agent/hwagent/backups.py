"""Backups of an account: its home and its databases, verified, restorable, pruned.

A backup is a root-only directory ``/var/backups/hostwright/<account>/<backup id>/`` holding
``files.tar.gz`` (the home, archived by the account's own user, so it holds only what that
user can read), ``db-<database>.sql.gz`` (one ``mariadb-dump`` per database), ``SHA256SUMS``
and ``report.jsonl`` (one line per component: component, ok, bytes, error).

A restore verifies the backup first (checksums, readable archives, every dump loads into a
scratch database), then makes the home exactly what the backup holds, as the account's user
(files created after the backup are removed), and loads each database anew.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
from typing import Any

from hwagent import _inhome, _rootfs, _sql, safefs, validate
from hwagent.errors import AgentError
from hwagent.registry import action

BACKUP_ROOT = "/var/backups/hostwright"
_BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[a-z0-9]{1,8})?$")
_DUMP = re.compile(r"^db-([a-z][a-z0-9_]{2,63})\.sql\.gz$")
MAX_KEEP = 90
CHUNK = 1024 * 1024


def _backup_id(value: object) -> str:
    if not isinstance(value, str) or not _BACKUP_ID.match(value):
        raise AgentError("invalid", f"{str(value)[:40]!r} is not a backup id")
    return value


def _open_backup(account: str, backup_id: str, *, create: bool = False) -> int:
    mode = 0o700 if create else None
    root = _rootfs.open_dir(BACKUP_ROOT, create_mode=mode)
    try:
        if create:
            os.fchmod(root, 0o700)  # account names and backup ids are nobody else's business
    finally:
        os.close(root)
    return _rootfs.open_dir(f"{BACKUP_ROOT}/{account}/{backup_id}", create_mode=mode)


def _create_file(dir_fd: int, name: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(name, flags, 0o600, dir_fd=dir_fd)


def _size(dir_fd: int, name: str) -> int:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size


def _files(account: str, home: str, dir_fd: int) -> dict[str, Any]:
    """The home as the account's own user archives it into root's file."""
    fd = _create_file(dir_fd, "files.tar.gz")
    try:
        done = safefs.as_user(account, _inhome.archive_home, home=home, out_fd=fd)
    finally:
        os.close(fd)
    if not done["ok"]:
        return {
            "component": "files",
            "ok": False,
            "bytes": 0,
            "error": done["error"] or "tar failed",
        }
    return {"component": "files", "ok": True, "bytes": _size(dir_fd, "files.tar.gz"), "error": ""}


def _dump(db: str, dir_fd: int) -> dict[str, Any]:
    name = f"db-{db}.sql.gz"
    component = f"db:{db}"
    fd = _create_file(dir_fd, name)
    proc = subprocess.Popen(
        ["mariadb-dump", "--single-transaction", "--routines", "--triggers", "--databases", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        while chunk := proc.stdout.read(CHUNK):
            out.write(chunk)
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        return {"component": component, "ok": False, "bytes": 0, "error": err[-300:]}
    return {"component": component, "ok": True, "bytes": _size(dir_fd, name), "error": ""}


def _sha256(dir_fd: int, name: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _archives(dir_fd: int) -> list[str]:
    return sorted(n for n in os.listdir(dir_fd) if n == "files.tar.gz" or _DUMP.match(n))


def _read_report(dir_fd: int) -> list[dict[str, Any]] | None:
    try:
        fd = os.open("report.jsonl", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        return [json.loads(line) for line in f if line.strip()]


@action("backup.create")
def create(
    *, account: str, backup_id: str, databases: list[str] | None = None, keep: int | None = None
) -> dict[str, Any]:
    """Back up the home and the account's databases (all of them, or those named), verify the
    backup, then keep only the newest ``keep`` backups.

    Every component is attempted; if any failed, the action fails with ``backup_failed``
    naming them (the backup directory stays for inspection and is removed by the undo). A
    backup id that already has a report is not made again.
    """
    account = validate.linux_user(account)
    backup_id = _backup_id(backup_id)
    if keep is not None and not 1 <= keep <= MAX_KEEP:
        raise AgentError("invalid", f"keep between 1 and {MAX_KEEP} backups")
    if databases is None:
        dbs = _sql.account_databases(account)
    else:
        dbs = [validate.owned_by(validate.db_name(d), account) for d in databases]
    home = safefs.account(account).pw_dir
    dir_fd = _open_backup(account, backup_id, create=True)
    try:
        report = _read_report(dir_fd)
        created = report is None
        if report is None:
            report = [_files(account, home, dir_fd)] + [_dump(db, dir_fd) for db in dbs]
            sums = "".join(f"{_sha256(dir_fd, n)}  {n}\n" for n in _archives(dir_fd))
            _rootfs.write_file(dir_fd, "SHA256SUMS", sums.encode())
            lines = "".join(json.dumps(r) + "\n" for r in report)
            _rootfs.write_file(dir_fd, "report.jsonl", lines.encode())
    finally:
        os.close(dir_fd)
    failed = [r for r in report if not r["ok"]]
    if failed:
        raise AgentError(
            "backup_failed",
            "the backup failed: " + "; ".join(f"{r['component']}: {r['error']}" for r in failed),
            changed=[f"{BACKUP_ROOT}/{account}/{backup_id}"],
            detail=json.dumps(report),
        )
    _verify(account, backup_id)
    pruned = prune(account=account, keep=keep)["removed"] if keep else []
    return {
        "changed": created,
        "created": created,
        "report": report,
        "verified": True,
        "pruned": pruned,
    }


def _verify(account: str, backup_id: str) -> None:
    """Checksums match, the archives are whole, and each dump loads into a scratch database."""
    dir_fd = _open_backup(account, backup_id)
    try:
        expected: dict[str, str] = {}
        try:
            fd = os.open("SHA256SUMS", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise AgentError("backup_damaged", "the backup has no checksums") from None
        with os.fdopen(fd) as f:
            for line in f:
                digest, _, name = line.rstrip("\n").partition("  ")
                expected[name] = digest
        names = _archives(dir_fd)
        if sorted(expected) != names:
            raise AgentError("backup_damaged", "the backup's files do not match its checksums")
        for name in names:
            if _sha256(dir_fd, name) != expected[name]:
                raise AgentError("backup_damaged", f"the backup's {name} has been altered")
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
                    while f.read(CHUNK):
                        pass
            except (OSError, EOFError):
                raise AgentError("backup_damaged", f"the backup's {name} is unreadable") from None
        scratch = f"{account}_hwverify"
        for name in names:
            if _DUMP.match(name):
                _sql.run(f"DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`;")
                try:
                    _load(dir_fd, name, database=scratch)
                finally:
                    _sql.run(f"DROP DATABASE IF EXISTS `{scratch}`;")
    finally:
        os.close(dir_fd)


def _load(dir_fd: int, name: str, *, database: str | None) -> None:
    """Load a dump; with ``database`` into that one (its own CREATE DATABASE and USE dropped)."""
    argv = ["mariadb", "--batch", "--protocol=socket"] + ([database] if database else [])
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stderr is not None
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
            for line in f:
                if database and (line.startswith(b"CREATE DATABASE") or line.startswith(b"USE ")):
                    continue
                proc.stdin.write(line)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise AgentError("backup_damaged", f"the backup's {name} does not load", detail=err[-500:])


@action("backup.verify")
def verify(*, account: str, backup_id: str) -> dict[str, Any]:
    """Check a backup without changing anything but a scratch database (dropped again)."""
    _verify(validate.linux_user(account), _backup_id(backup_id))
    return {"changed": False, "verified": True}


@action("backup.restore")
def restore(*, account: str, backup_id: str) -> dict[str, Any]:
    """Verify the backup, then put the home and the databases back exactly as they were.

    Files are restored by the account's own user: the archive (root's, opened by root) is
    unpacked into a fresh folder in the home, and only then does each top-level entry of the
    home give way to the unpacked one; entries the backup did not hold are removed. Each
    database in the backup is dropped and loaded from its dump. A failed verification changes
    nothing.
    """
    account = validate.linux_user(account)
    backup_id = _backup_id(backup_id)
    _verify(account, backup_id)
    home = safefs.account(account).pw_dir
    dir_fd = _open_backup(account, backup_id)
    try:
        archive = os.open("files.tar.gz", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            files = safefs.as_user(account, _inhome.restore_home, home=home, archive_fd=archive)
        finally:
            os.close(archive)
        restored = []
        for name in _archives(dir_fd):
            match = _DUMP.match(name)
            if match is None:
                continue
            db = validate.owned_by(match.group(1), account)
            _sql.run(f"DROP DATABASE IF EXISTS `{db}`;")
            _load(dir_fd, name, database=None)
            restored.append(db)
    finally:
        os.close(dir_fd)
    return {"changed": True, "files": files.get("restored", []), "databases": restored}


@action("backup.remove")
def remove(*, account: str, backup_id: str) -> dict[str, Any]:
    """Delete one backup (a no-op when it is gone)."""
    account = validate.linux_user(account)
    backup_id = _backup_id(backup_id)
    try:
        fd = _rootfs.open_dir(f"{BACKUP_ROOT}/{account}")
    except AgentError as exc:
        if exc.code == "not_found":
            return {"changed": False}
        raise
    try:
        return {"changed": _rootfs.remove_tree(fd, backup_id)}
    finally:
        os.close(fd)


def _ids(account: str) -> list[str]:
    try:
        fd = _rootfs.open_dir(f"{BACKUP_ROOT}/{account}")
    except AgentError as exc:
        if exc.code == "not_found":
            return []
        raise
    try:
        return sorted(n for n in os.listdir(fd) if _BACKUP_ID.match(n))
    finally:
        os.close(fd)


@action("backup.prune")
def prune(*, account: str, keep: int) -> dict[str, Any]:
    """Keep the newest ``keep`` backups of the account (ids sort by time), delete the rest."""
    account = validate.linux_user(account)
    if isinstance(keep, bool) or not 1 <= keep <= MAX_KEEP:
        raise AgentError("invalid", f"keep between 1 and {MAX_KEEP} backups")
    ids = _ids(account)
    old = ids[: max(len(ids) - keep, 0)]
    for backup_id in old:
        remove(account=account, backup_id=backup_id)
    return {"changed": bool(old), "removed": old, "kept": ids[len(old) :]}


@action("backup.list")
def list_backups(*, account: str) -> dict[str, Any]:
    """The account's backups on this node, oldest first, with their reports."""
    account = validate.linux_user(account)
    found = []
    for backup_id in _ids(account):
        fd = _open_backup(account, backup_id)
        try:
            found.append({"id": backup_id, "report": _read_report(fd)})
        finally:
            os.close(fd)
    return {"changed": False, "backups": found}


@action("backup.remove_all")
def remove_all(*, account: str) -> dict[str, Any]:
    """Delete every backup of the account (at termination)."""
    account = validate.linux_user(account)
    try:
        fd = _rootfs.open_dir(BACKUP_ROOT)
    except AgentError as exc:
        if exc.code == "not_found":
            return {"changed": False}
        raise
    try:
        return {"changed": _rootfs.remove_tree(fd, account)}
    finally:
        os.close(fd)
