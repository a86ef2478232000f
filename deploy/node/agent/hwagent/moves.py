"""Moving an account to another node: a package made on the old node, carried by the panel's
worker in chunks, and unpacked on the new one.

A package is a root-only directory ``/var/lib/hostwright/moves/<account>/<move id>/`` holding
``files.tar.gz`` (the home, archived by the account's own user, as a backup does),
``db-<database>.sql.gz`` (one ``mariadb-dump`` per database of the account), ``account.json``
(the account's database users with their password hashes and grants, and ``~/.my.cnf``) and
``SHA256SUMS``. Nothing of it ever lies in a customer's home, and none of it is read back but
by root: the worker reads it in chunks (``move.read``) on one node and writes them
(``move.write``) into the same place on the other, where ``move.unpack`` checks every
checksum before anything of the account changes. The worker never sees a password: only
opaque chunks pass through it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from typing import Any

from hwagent import (
    _inhome,
    _rootfs,
    _sql,
    backups,
    certs,
    databases,
    inventory,
    mail,
    safefs,
    sftp,
    sites,
    system,
    users,
    validate,
)
from hwagent.errors import AgentError
from hwagent.registry import action

MOVE_ROOT = "/var/lib/hostwright/moves"
CHUNK = 4 * 1024 * 1024
_MOVE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_NAME = re.compile(
    r"^(?:files\.tar\.gz|mail\.tar\.gz|backups\.tar\.gz|account\.json|SHA256SUMS"
    r"|db-[a-z][a-z0-9_]{2,63}\.sql\.gz)$"
)
_STAGING = ".hw-move-"
MYCNF = databases.MYCNF


def _move_id(value: object) -> str:
    if not isinstance(value, str) or not _MOVE_ID.match(value):
        raise AgentError("invalid", f"{str(value)[:40]!r} is not a move id")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise AgentError("invalid", f"{str(value)[:80]!r} is not a file of a move package")
    return value


def _open_package(account: str, move_id: str, *, create: bool = False) -> int:
    mode = 0o700 if create else None
    root = _rootfs.open_dir(MOVE_ROOT, create_mode=mode)
    try:
        if create:
            os.fchmod(root, 0o700)
    finally:
        os.close(root)
    return _rootfs.open_dir(f"{MOVE_ROOT}/{account}/{move_id}", create_mode=mode)


def _remove_package(account: str, move_id: str) -> bool:
    try:
        fd = _rootfs.open_dir(f"{MOVE_ROOT}/{account}")
    except AgentError as exc:
        if exc.code == "not_found":
            return False
        raise
    try:
        removed = _rootfs.remove_tree(fd, move_id)
        left = os.listdir(fd)
    finally:
        os.close(fd)
    if not left:
        parent = _rootfs.open_dir(MOVE_ROOT)
        try:
            _rootfs.remove_tree(parent, account)
        finally:
            os.close(parent)
    return removed


def _db_users(account: str) -> list[dict[str, Any]]:
    """The account's database users: the native password hash and the databases granted."""
    found: dict[str, dict[str, Any]] = {}
    for user, host in _sql.account_users(account):
        validate.owned_by(validate.db_user(user), account)
        if host not in databases.HOSTS:
            continue
        [[plugin, pw_hash]] = _sql.rows(
            "SELECT plugin, authentication_string FROM mysql.user "  # noqa: S608 (validated)
            f"WHERE user = '{user}' AND host = '{host}'"
        )
        if plugin not in ("mysql_native_password", ""):
            raise AgentError(
                "move_failed", f"the database user {user} signs in another way ({plugin})"
            )
        grants = [
            r[0]
            for r in _sql.rows(
                f"SELECT db FROM mysql.db WHERE user = '{user}' AND host = '{host}'"  # noqa: S608
            )
        ]
        entry = found.setdefault(user, {"user": user, "hash": pw_hash, "databases": []})
        for db in grants:
            db = db.replace("\\_", "_")
            if db.startswith(account + "_") and db not in entry["databases"]:
                entry["databases"].append(db)
    return sorted(found.values(), key=lambda u: u["user"])


def _read_mycnf(account: str) -> dict[str, Any] | None:
    """``~/.my.cnf`` as the panel made it (a plain file of root's or the account's), or None."""
    pw = safefs.account(account)
    with safefs.home_fd(account) as home:
        try:
            fd = os.open(MYCNF, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=home)  # fmt: skip
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid not in (0, pw.pw_uid):
                return None
            text = os.read(fd, 8192).decode(errors="replace")
        finally:
            os.close(fd)
    return {"text": text, "root": st.st_uid == 0, "mode": stat.S_IMODE(st.st_mode) & 0o640}


# --- mail, certificate and backups ------------------------------------------------------------


def _mail_state(domain: str) -> dict[str, Any] | None:
    """The domain's lines in the mail tables and its DKIM key, or None when the node does not
    take mail for it."""
    if domain not in mail._domains():
        return None
    suffix = "@" + domain
    tables: dict[str, list[str]] = {}
    for name, sep in (("mailboxes", None), ("aliases", None), ("passwd", ":")):
        tables[name] = [x for x in mail._lines(f"{mail.MAIL_ETC}/{name}")
                        if mail._key(x, sep).endswith(suffix)]  # fmt: skip
    for name, key in (("limits", domain), ("catchall", suffix)):
        tables[name] = [x for x in mail._lines(f"{mail.MAIL_ETC}/{name}") if mail._key(x) == key]
    dkim = None
    for line in mail._lines(f"{mail.DKIM_DIR}/signingtable"):
        if mail._key(line) == f"*@{domain}":
            selector = line.split()[1].split(".", 1)[0]
            pem = system.read_text(f"{mail.DKIM_DIR}/{domain}/{selector}.private")
            if pem:
                dkim = {"selector": mail._selector(selector), "key": pem}
    return {"domain": domain, "tables": tables, "dkim": dkim}


def _archive_maildirs(*, domain: str, out_fd: int) -> dict[str, Any]:
    """(As vmail.) A gzip tar of the domain's stored mail (members ``<domain>/...``)."""
    done = subprocess.run(
        ["tar", "--create", "--gzip", "--one-file-system", "--numeric-owner",
         f"--directory={mail.VHOSTS}", "--file=-", domain],
        stdin=subprocess.DEVNULL, stdout=out_fd, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    err = done.stderr.decode(errors="replace").strip()
    return {"ok": done.returncode == 0, "error": err[-300:] if done.returncode else ""}


def _restore_maildirs(*, domain: str, archive_fd: int) -> dict[str, Any]:
    """(As vmail.) Make the domain's stored mail exactly what the archive holds: unpacked
    beside it first, then swapped into place."""
    staging = tempfile.mkdtemp(prefix=_STAGING, dir=mail.VHOSTS)
    try:
        done = subprocess.run(
            ["tar", "--extract", "--gzip", "--file=-", f"--directory={staging}",
             "--no-same-owner", "--delay-directory-restore"],
            stdin=archive_fd, capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not os.path.isdir(os.path.join(staging, domain)):
            raise AgentError(
                "move_failed",
                "the stored mail could not be unpacked",
                detail=done.stderr.decode(errors="replace")[-500:],
            )
        current = os.path.join(mail.VHOSTS, domain)
        if os.path.lexists(current):
            _inhome._remove(current)
        os.rename(os.path.join(staging, domain), current)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"ok": True}


def _pack_maildirs(domain: str, dir_fd: int) -> None:
    if os.path.isdir(os.path.join(mail.VHOSTS, domain)):
        fd = backups._create_file(dir_fd, "mail.tar.gz")
        try:
            done = safefs.as_user("vmail", _archive_maildirs, domain=domain, out_fd=fd)
        finally:
            os.close(fd)
        if not done["ok"]:
            raise AgentError("move_failed", f"the stored mail could not be packed: {done['error']}")


def _pack_mail(domain: str, dir_fd: int) -> dict[str, Any] | None:
    state = _mail_state(domain)
    if state is not None:
        _pack_maildirs(domain, dir_fd)
    return state


def _unpack_mail(state: dict[str, Any], dir_fd: int, names: list[str]) -> None:
    domain = validate.domain(state["domain"])
    suffix = "@" + domain
    tables = state["tables"]
    for name, sep in (("mailboxes", None), ("aliases", None), ("passwd", ":"),
                      ("limits", None), ("catchall", None)):  # fmt: skip
        for line in tables.get(name, []):
            key = mail._key(line, sep)
            if not (key == domain or key.endswith(suffix)) or "\n" in line:
                raise AgentError(
                    "move_failed", "the move package's mail tables are not the domain's"
                )
    with mail._locked():
        mail._set_line("domains", domain, f"{domain} OK")
        for name, sep in (("mailboxes", None), ("aliases", None), ("passwd", ":")):
            path = f"{mail.MAIL_ETC}/{name}"
            kept = [x for x in mail._lines(path) if not mail._key(x, sep).endswith(suffix)]
            lines = kept + list(tables.get(name, []))
            if name == "passwd":
                mail._write_passwd(lines)
            else:
                mail._write(path, lines)
        for name, key in (("limits", domain), ("catchall", suffix)):
            line = (tables.get(name) or [None])[0]
            mail._set_line(name, key, line)
        dkim = state.get("dkim")
        if dkim:
            selector = mail._selector(dkim["selector"])
            owner = pwd.getpwnam("opendkim")
            folder = f"{mail.DKIM_DIR}/{domain}"
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o750)
            os.chown(folder, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                safefs.write_at(fd, f"{selector}.private", str(dkim["key"]).encode(),
                                uid=owner.pw_uid, gid=owner.pw_gid, mode=0o600)  # fmt: skip
            finally:
                os.close(fd)
            mail._dkim_tables(domain, selector)
        if "mail.tar.gz" in names:
            _unpack_maildirs(domain, dir_fd)
        else:
            with mail._dir(domain):
                pass
        mail._reload_postfix()
        mail._reload_opendkim()


def _unpack_maildirs(domain: str, dir_fd: int) -> None:
    archive = os.open("mail.tar.gz", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        safefs.as_user("vmail", _restore_maildirs, domain=domain, archive_fd=archive)
    finally:
        os.close(archive)


def _cert_state(account: str, domain: str) -> dict[str, Any] | None:
    folder = f"{certs.CERTS_DIR}/{domain}"
    chain = system.read_text(f"{folder}/fullchain.pem")
    key = system.read_text(f"{folder}/privkey.pem")
    if not chain or not key:
        return None
    return {
        "fullchain": chain,
        "key": key,
        "https": sites.has_https(account),
    }


def _pack_backups(account: str, dir_fd: int) -> bool:
    """The account's backups (root's own files) as one archive; False when it has none."""
    if not os.path.isdir(f"{backups.BACKUP_ROOT}/{account}"):
        return False
    fd = backups._create_file(dir_fd, "backups.tar.gz")
    try:
        done = subprocess.run(
            ["tar", "--create", "--gzip", "--one-file-system",
             f"--directory={backups.BACKUP_ROOT}", "--file=-", account],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
    finally:
        os.close(fd)
    if done.returncode != 0:
        raise AgentError(
            "move_failed",
            "the backups could not be packed",
            detail=done.stderr.decode(errors="replace")[-300:],
        )
    return True


def _unpack_backups(account: str, dir_fd: int) -> None:
    """The backups archive, checked member by member (plain files and folders under the
    account's name only), unpacked into the node's backup folder."""
    fd = os.open("backups.tar.gz", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            parts = m.name.split("/")
            if parts[0] != account or ".." in parts or not (m.isfile() or m.isdir()):
                raise AgentError("move_failed", "the move package's backups are not the account's")
        root = _rootfs.open_dir(backups.BACKUP_ROOT, create_mode=0o700)
        try:
            _rootfs.remove_tree(root, account)
        finally:
            os.close(root)
        for m in members:
            m.uid = m.gid = 0
            m.mode &= 0o700
        tar.extractall(backups.BACKUP_ROOT, members=members, numeric_owner=True)  # noqa: S202 (checked above)


def _sftp_state(account: str) -> dict[str, Any] | None:
    """Whether the account may use SFTP, with its password hash and public keys."""
    if account not in users._group_members(sftp.GROUP):
        return None
    password_hash = ""
    for line in (system.read_text("/etc/shadow") or "").splitlines():
        name, _, rest = line.partition(":")
        if name == account:
            candidate = rest.split(":", 1)[0]
            if sftp._HASH.fullmatch(candidate):
                password_hash = candidate
    keys = system.read_text(f"{sftp.KEYS_DIR}/{account}") or ""
    return {"password_hash": password_hash, "keys": [k for k in keys.splitlines() if k.strip()]}


def _unpack_sftp(account: str, state: dict[str, Any]) -> None:
    """The account let in over SFTP as on the old node (the checks of ``sftp.enable``)."""
    password_hash = str(state.get("password_hash") or "")
    if password_hash and not sftp._HASH.fullmatch(password_hash):
        raise AgentError("move_failed", "the move package's SFTP password is unusable")
    keys = [sftp.public_key(k) for k in state.get("keys") or []][: sftp.MAX_KEYS]
    users.home_layout(account)
    users.set_membership(account, sftp.GROUP, True)
    if password_hash:
        system.run(["chpasswd", "-e"], input=f"{account}:{password_hash}\n".encode(),
                   what="setting the password")  # fmt: skip
    os.makedirs(sftp.KEYS_DIR, mode=0o755, exist_ok=True)
    system.replace_file(f"{sftp.KEYS_DIR}/{account}", "".join(k + "\n" for k in keys))


@action("move.pack")
def pack(*, account: str, move_id: str, domain: str, final: bool = False) -> dict[str, Any]:
    """Make the account's move package on this (the old) node, replacing an earlier one of the
    same move: the home as the account's user archives it, every database of the account, its
    database users and ``~/.my.cnf``, the domain's mail (tables, DKIM key, stored mail as vmail
    archives it), its certificate, the account's backups and its SFTP access (password hash,
    keys). ``final`` (the copy made while the site is frozen) packs only what can still change
    then, so the site is down no longer than needed: the home, the databases and the stored
    mail (what else there is changes only through operations, and none runs during a move).
    Nothing of the account changes.
    On failure the package is removed again (``move.discard`` removes it too)."""
    account = validate.linux_user(account)
    move_id = _move_id(move_id)
    domain = validate.domain(domain)
    home = safefs.account(account).pw_dir
    _remove_package(account, move_id)
    dir_fd = _open_package(account, move_id, create=True)
    try:
        report = [backups._files(account, home, dir_fd)]
        report += [backups._dump(db, dir_fd) for db in _sql.account_databases(account)]
        failed = [r for r in report if not r["ok"]]
        if failed:
            raise AgentError(
                "move_failed",
                "the account could not be packed: "
                + "; ".join(f"{r['component']}: {r['error']}" for r in failed),
            )
        if final:
            mail_state = None
            cert_state = None
            _pack_maildirs(domain, dir_fd)
        else:
            mail_state = _pack_mail(domain, dir_fd)
            cert_state = _cert_state(account, domain)
        meta: dict[str, Any] = {
            "account": account,
            "domain": domain,
            "db_users": _db_users(account),
            "mycnf": _read_mycnf(account),
            "mail": mail_state,
            "certificate": cert_state,
            "backups": False if final else _pack_backups(account, dir_fd),
            "sftp": None if final else _sftp_state(account),
        }
        _rootfs.write_file(dir_fd, "account.json", json.dumps(meta).encode())
        names = sorted(n for n in os.listdir(dir_fd) if _NAME.match(n) and n != "SHA256SUMS")
        files = [
            {"name": n, "size": backups._size(dir_fd, n), "sha256": backups._sha256(dir_fd, n)}
            for n in names
        ]
        sums = "".join(f"{f['sha256']}  {f['name']}\n" for f in files)
        _rootfs.write_file(dir_fd, "SHA256SUMS", sums.encode())
        files.append(
            {
                "name": "SHA256SUMS",
                "size": len(sums.encode()),
                "sha256": hashlib.sha256(sums.encode()).hexdigest(),
            }
        )
    except BaseException:
        os.close(dir_fd)
        dir_fd = -1
        _remove_package(account, move_id)
        raise
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    return {
        "changed": True,
        "files": files,
        "bytes": sum(f["size"] for f in files),
        "databases": [r["component"][3:] for r in report if r["component"].startswith("db:")],
        "mail": mail_state is not None,
        "mailboxes": len((mail_state or {}).get("tables", {}).get("mailboxes", [])),
        "certificate": cert_state is not None,
        "https": bool((cert_state or {}).get("https")),
    }


@action("move.read")
def read(*, account: str, move_id: str, name: str, offset: int) -> dict[str, Any]:
    """Up to 4 MiB of a package file from ``offset`` (base64), with the file's size."""
    account = validate.linux_user(account)
    move_id, name = _move_id(move_id), _name(name)
    if isinstance(offset, bool) or offset < 0:
        raise AgentError("invalid", "the offset must be a whole number from 0")
    dir_fd = _open_package(account, move_id)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise AgentError("not_found", f"the move package has no {name}") from None
    finally:
        os.close(dir_fd)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, CHUNK, offset)
    finally:
        os.close(fd)
    return {
        "changed": False,
        "data": base64.b64encode(data).decode(),
        "size": size,
        "eof": offset + len(data) >= size,
    }


@action("move.write")
def write(*, account: str, move_id: str, name: str, offset: int, data: str) -> dict[str, Any]:
    """Write a chunk of a package file on this (the new) node: at offset 0 the file starts
    anew, any other offset must be the file's current end (a chunk is never written twice or
    out of order; a worker that lost its place starts the file again)."""
    account = validate.linux_user(account)
    move_id, name = _move_id(move_id), _name(name)
    if isinstance(offset, bool) or offset < 0:
        raise AgentError("invalid", "the offset must be a whole number from 0")
    if len(data) > CHUNK * 4 // 3 + 8:
        raise AgentError("invalid", "a chunk is at most 4 MiB")
    try:
        chunk = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError("invalid", "the chunk is not base64") from None
    dir_fd = _open_package(account, move_id, create=True)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if offset == 0:
            flags |= os.O_TRUNC
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        size = os.fstat(fd).st_size
        if size != offset:
            raise AgentError(
                "conflict", f"{name} holds {size} bytes, not {offset}: send it again from 0"
            )
        os.pwrite(fd, chunk, offset)
        return {"changed": True, "size": offset + len(chunk)}
    finally:
        os.close(fd)


def _checked(dir_fd: int) -> list[str]:
    """The package's files, after every checksum matched."""
    try:
        fd = os.open("SHA256SUMS", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise AgentError("move_failed", "the move package arrived without its checksums") from None
    expected: dict[str, str] = {}
    with os.fdopen(fd) as f:
        for line in f:
            digest, _, name = line.rstrip("\n").partition("  ")
            if name:
                expected[name] = digest
    for name, digest in expected.items():
        _name(name)
        try:
            actual = backups._sha256(dir_fd, name)
        except FileNotFoundError:
            raise AgentError("move_failed", f"the move package arrived without {name}") from None
        if actual != digest:
            raise AgentError("move_failed", f"the move package's {name} arrived damaged")
    if "files.tar.gz" not in expected or "account.json" not in expected:
        raise AgentError("move_failed", "the move package is incomplete")
    return sorted(expected)


def _write_mycnf(account: str, mycnf: dict[str, Any] | None) -> None:
    if not mycnf:
        return
    pw = safefs.account(account)
    uid = 0 if mycnf.get("root") else pw.pw_uid
    mode = int(mycnf.get("mode", 0o600)) & 0o640
    with safefs.home_fd(account) as home:
        safefs.write_at(home, MYCNF, str(mycnf["text"]).encode(), uid=uid, gid=pw.pw_gid, mode=mode)


@action("move.unpack")
def unpack(*, account: str, move_id: str) -> dict[str, Any]:
    """Put the package's account in place on this (the new) node, whose Linux user must exist.

    Every checksum is checked first (a damaged package changes nothing). Then the home becomes
    exactly what the package holds (as the account's user, as a restore does), each database
    is dropped and loaded from its dump, each database user is set with its password hash and
    grants at localhost and 127.0.0.1, and ``~/.my.cnf`` is written through the home's handle.
    Running it again with the same package gives the same result.
    """
    account = validate.linux_user(account)
    move_id = _move_id(move_id)
    pw = safefs.account(account)
    dir_fd = _open_package(account, move_id)
    try:
        names = _checked(dir_fd)
        fd = os.open("account.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd) as f:
            meta = json.load(f)
        if meta.get("account") != account:
            raise AgentError("move_failed", "the move package is another account's")
        users = []
        for entry in meta.get("db_users") or []:
            user = validate.owned_by(validate.db_user(entry["user"]), account)
            pw_hash = _sql.password_hash(entry["hash"])
            grants = [validate.owned_by(validate.db_name(d), account) for d in entry["databases"]]
            users.append((user, pw_hash, grants))
        # ~/.my.cnf before the files: an entry of root's in a root-owned home, which the
        # files' restore (as the account's user) leaves to root but expects to find; and again
        # after them, where the account may write its home itself and the restore replaced it.
        _write_mycnf(account, meta.get("mycnf"))
        archive = os.open("files.tar.gz", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)  # fmt: skip
        try:
            files = safefs.as_user(
                account, _inhome.restore_home, home=pw.pw_dir, archive_fd=archive
            )
        finally:
            os.close(archive)
        _write_mycnf(account, meta.get("mycnf"))
        loaded = []
        for name in names:
            match = backups._DUMP.match(name)
            if match is None:
                continue
            db = validate.owned_by(match.group(1), account)
            _sql.run(f"DROP DATABASE IF EXISTS `{db}`;")
            backups._load(dir_fd, name, database=None)
            loaded.append(db)
        for user, pw_hash, grants in users:
            databases._set_user(user, pw_hash, grants)
        if meta.get("mail"):
            _unpack_mail(meta["mail"], dir_fd, names)
        elif "mail.tar.gz" in names:
            with mail._locked():
                _unpack_maildirs(validate.domain(meta["domain"]), dir_fd)
        cert = meta.get("certificate")
        if cert:
            certs.install(
                domain=meta["domain"], fullchain_pem=cert["fullchain"], key_pem=cert["key"]
            )
            mail.sni_refresh()
        if meta.get("backups") and "backups.tar.gz" in names:
            _unpack_backups(account, dir_fd)
        if meta.get("sftp"):
            _unpack_sftp(account, meta["sftp"])
    finally:
        os.close(dir_fd)
    return {
        "changed": True,
        "files": files.get("restored", []),
        "databases": loaded,
        "db_users": [u[0] for u in users],
        "mail": bool(meta.get("mail")),
        "certificate": bool(cert),
        "https": bool(cert and cert.get("https")),
        "sftp": bool(meta.get("sftp")),
    }


@action("move.discard")
def discard(*, account: str, move_id: str) -> dict[str, Any]:
    """Remove the move's package from this node (a no-op when it is gone)."""
    account = validate.linux_user(account)
    return {"changed": _remove_package(account, _move_id(move_id))}


@action("move.packages")
def packages(*, account: str) -> dict[str, Any]:
    """The account's move packages on this node (what a move left, for inventory)."""
    account = validate.linux_user(account)
    try:
        fd = _rootfs.open_dir(f"{MOVE_ROOT}/{account}")
    except AgentError as exc:
        if exc.code == "not_found":
            return {"changed": False, "packages": []}
        raise
    try:
        return {"changed": False, "packages": sorted(os.listdir(fd))}
    finally:
        os.close(fd)


@inventory.kind("move_package")
def _packages_of(account: str) -> list[str]:
    """Move packages left on the node (a move discards its own when it ends)."""
    if not account:
        try:
            return sorted(os.listdir(MOVE_ROOT))
        except FileNotFoundError:
            return []
    return list(packages(account=account)["packages"])
