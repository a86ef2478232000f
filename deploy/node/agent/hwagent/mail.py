"""Mail: domains, mailboxes, forwarders, catch-alls, auto-replies, DKIM keys, sending limits.

The data are the plain files of ``/etc/hostwright/mail`` that Postfix, Dovecot, OpenDKIM and the
sending-limit policy read (formats in ``deploy/node/parts/80-mail.sh``). Every change holds the
same lock file as the node's earlier shell tooling (``/etc/hostwright/mail/.lock``), rewrites
whole files atomically, then rebuilds the derived tables (every mailbox an alias of itself, so
a catch-all never swallows it; who may send as which domain) and reloads Postfix.

Passwords never reach the node: only bcrypt hashes (Dovecot's ``BLF-CRYPT``) do.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import pwd
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from hwagent import safefs, system, validate
from hwagent.errors import AgentError
from hwagent.registry import action

MAIL_ETC = "/etc/hostwright/mail"
VHOSTS = "/var/mail/vhosts"
DKIM_DIR = f"{MAIL_ETC}/dkim"
CERTS_DIR = "/etc/hostwright/certs"
POLICY = "/usr/local/lib/hostwright/mail-sending.py"
MAX_QUOTA_MB = 1024 * 1024
MAX_FORWARD_TARGETS = 20
MAX_SEND_PER_HOUR = 1_000_000
_HASH = re.compile(r"^\{BLF-CRYPT\}\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$")
_SELECTOR = re.compile(r"^[a-z][a-z0-9]{0,62}$")
_PUBLIC_KEY = re.compile(r"^[A-Za-z0-9+/]{100,1000}={0,2}$")


# --- checks -----------------------------------------------------------------------------------


def _address(value: object) -> str:
    if not isinstance(value, str) or value.count("@") != 1:
        raise AgentError("invalid", f"{str(value)[:80]!r} is not an e-mail address")
    local, domain = value.lower().split("@")
    return f"{validate.local_part(local)}@{validate.domain(domain)}"


def _password_hash(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise AgentError("invalid", "unusable password hash")
    return value


def _quota(value: int) -> int:
    return validate.positive_int(value, name="the quota (MB)", maximum=MAX_QUOTA_MB)


def _per_hour(value: int, what: str) -> int:
    return validate.positive_int(value, name=f"the {what} sending limit", maximum=MAX_SEND_PER_HOUR)


def _selector(value: str) -> str:
    if not _SELECTOR.fullmatch(value):
        raise AgentError("invalid", f"{value[:80]!r} is not a DKIM selector")
    return value


# --- the tables -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(wait: float = 50) -> Iterator[None]:
    """The mail tables' lock (the same file the shell tooling locks)."""
    with system.file_lock(
        f"{MAIL_ETC}/.lock", wait=wait, busy="another mail change is in progress"
    ):
        yield


def _lines(path: str) -> list[str]:
    text = system.read_text(path)
    return [line for line in (text or "").splitlines() if line.strip()]


def _write(path: str, lines: list[str], *, mode: int = 0o644, group: str = "root") -> bool:
    """Replace a table with ``lines`` (atomically), keeping the owner group it must have."""
    content = "".join(line + "\n" for line in lines).encode()
    gid = grp.getgrnam(group).gr_gid
    try:
        st = os.stat(path, follow_symlinks=False)
        with open(path, "rb") as f:
            if f.read() == content and (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (
                0,
                gid,
                mode,
            ):
                return False
    except FileNotFoundError:
        pass
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            os.fchown(f.fileno(), 0, gid)
            os.fchmod(f.fileno(), mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def _key(line: str, sep: str | None = None) -> str:
    return line.split(sep, 1)[0] if line else ""


def _set_line(name: str, key: str, line: str | None, *, sep: str | None = None) -> bool:
    """Replace the line(s) of ``key`` in a table by ``line`` (or drop them)."""
    path = f"{MAIL_ETC}/{name}"
    old = _lines(path)
    new = [x for x in old if _key(x, sep) != key] + ([line] if line else [])
    if name == "passwd":
        return _write_passwd(new)
    return _write(path, new)


def _write_passwd(lines: list[str]) -> bool:
    """Dovecot notices a changed passwd-file by its mtime (whole seconds) and size: move the
    mtime strictly forward, or two edits in one second could look unchanged forever."""
    path = f"{MAIL_ETC}/passwd"
    before = os.stat(path).st_mtime_ns // 10**9 if os.path.exists(path) else 0
    changed = _write(path, lines, mode=0o640, group="dovecot")
    if changed and os.stat(path).st_mtime_ns // 10**9 <= before:
        os.utime(path, (before + 1, before + 1))
    return changed


def _domains() -> list[str]:
    return [_key(x) for x in _lines(f"{MAIL_ETC}/domains")]


def _require_domain(domain: str) -> None:
    if domain not in _domains():
        raise AgentError("not_found", f"mail domain {domain} is not set up on this node")


def _rebuild() -> None:
    """The derived tables: every mailbox an alias of itself; each domain's senders."""
    mailboxes = [_key(x) for x in _lines(f"{MAIL_ETC}/mailboxes")]
    _write(f"{MAIL_ETC}/selfaliases", [f"{m} {m}" for m in mailboxes])
    account = {
        x.split()[0]: x.split()[1] for x in _lines(f"{MAIL_ETC}/limits") if len(x.split()) > 1
    }

    def owner(domain: str) -> str:
        return account.get(domain, "@" + domain)

    logins: dict[str, list[str]] = {}
    for m in mailboxes:
        logins.setdefault(owner(m.rsplit("@", 1)[1]), []).append(m)
    senders = [f"@{d} {','.join(logins[owner(d)])}" for d in _domains() if logins.get(owner(d))]
    _write(f"{MAIL_ETC}/senders", senders)


def _reload_postfix() -> None:
    _rebuild()
    if system.run(["postfix", "reload"], check=False, timeout=60).returncode != 0:
        system.run(["postfix", "start"], what="starting Postfix", timeout=60)


def _reload_opendkim() -> None:
    if system.have_systemd():
        system.run(["systemctl", "reload", "opendkim"], what="reloading OpenDKIM")
        return
    pid_text = system.read_text("/run/opendkim/opendkim.pid")
    if pid_text and pid_text.strip().isdigit():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_text.strip()), 10)  # SIGUSR1: read the tables again
            return
    system.run(["opendkim", "-x", "/etc/opendkim.conf"], what="starting OpenDKIM")


def _vmail() -> tuple[int, int]:
    entry = pwd.getpwnam("vmail")
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def _dir(*names: str, create: bool = True) -> Iterator[int]:
    """A handle on VHOSTS/<names...>, each folder opened without following a link (made as
    vmail's, 0770, when missing)."""
    uid, gid = _vmail()
    fd = os.open(VHOSTS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in names:
            child = safefs.open_dir_at(fd, name, create_mode=0o770 if create else None)
            os.close(fd)
            fd = child
            if create:
                st = os.fstat(fd)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.fchown(fd, uid, gid)
        yield fd
    finally:
        os.close(fd)


def _remove_tree(*names: str) -> None:
    """Remove VHOSTS/<names> (never following a link out of it)."""
    path = os.path.join(VHOSTS, *names)
    if os.path.islink(path) or not os.path.exists(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    system.run(["rm", "-rf", "--one-file-system", "--", path], what="removing stored mail")


# --- actions ----------------------------------------------------------------------------------


@action("mail.domain.ensure")
def domain_ensure(
    *, domain: str, account: str = "", account_hour: int = 500, mailbox_hour: int = 100
) -> dict[str, Any]:
    """Accept mail for ``domain``; with ``account`` it belongs to that hosting account (its
    mailboxes may send as it, within the hourly limits)."""
    domain = validate.domain(domain)
    limits = ""
    if account:
        limits = (
            f"{domain} {validate.linux_user(account)} {_per_hour(account_hour, 'account')}"
            f" {_per_hour(mailbox_hour, 'mailbox')}"
        )
    with _locked():
        changed = _set_line("domains", domain, f"{domain} OK")
        if account:
            changed |= _set_line("limits", domain, limits)
        with _dir(domain):
            pass
        _reload_postfix()
    return {"changed": changed}


@action("mail.limits.set")
def limits_set(
    *, domain: str, account: str, account_hour: int, mailbox_hour: int
) -> dict[str, Any]:
    domain = validate.domain(domain)
    line = (
        f"{domain} {validate.linux_user(account)} {_per_hour(account_hour, 'account')}"
        f" {_per_hour(mailbox_hour, 'mailbox')}"
    )
    with _locked():
        _require_domain(domain)
        changed = _set_line("limits", domain, line)
        _reload_postfix()
    return {"changed": changed}


@action("mail.domain.remove")
def domain_remove(*, domain: str, purge: bool = False) -> dict[str, Any]:
    """Stop accepting mail for ``domain``: its mailboxes, forwarders, catch-all, limits and
    DKIM keys go too; with ``purge`` its stored mail as well."""
    domain = validate.domain(domain)
    suffix = "@" + domain
    with _locked():
        changed = _set_line("domains", domain, None)
        for name, sep in (("mailboxes", None), ("aliases", None), ("passwd", ":")):
            path = f"{MAIL_ETC}/{name}"
            old = _lines(path)
            new = [x for x in old if not _key(x, sep).endswith(suffix)]
            if new != old:
                changed |= _write_passwd(new) if name == "passwd" else _write(path, new)
        changed |= _set_line("limits", domain, None)
        changed |= _set_line("catchall", suffix, None)
        changed |= _dkim_tables(domain, None)
        if os.path.isdir(f"{DKIM_DIR}/{domain}"):
            system.run(["rm", "-rf", "--", f"{DKIM_DIR}/{domain}"])
            changed = True
        if purge and os.path.lexists(f"{VHOSTS}/{domain}"):
            _remove_tree(domain)
            changed = True
        _reload_postfix()
        _reload_opendkim()
    return {"changed": changed}


@action("mail.mailbox.list")
def mailbox_list(*, domain: str) -> dict[str, Any]:
    domain = validate.domain(domain)
    found = [_key(x) for x in _lines(f"{MAIL_ETC}/mailboxes")]
    return {"changed": False, "mailboxes": [m for m in found if m.endswith("@" + domain)]}


@action("mail.mailbox.ensure")
def mailbox_ensure(*, address: str, password_hash: str, quota_mb: int) -> dict[str, Any]:
    """Create (or bring up to date) a mailbox with its password hash and quota."""
    address = _address(address)
    local, domain = address.split("@")
    entry = f"{address}:{_password_hash(password_hash)}::::::userdb_quota_rule=*:storage="
    entry += f"{_quota(quota_mb)}M"
    with _locked():
        _require_domain(domain)
        changed = _set_line("mailboxes", address, f"{address} {domain}/{local}/")
        changed |= _set_line("passwd", address, entry, sep=":")
        with _dir(domain, local):
            pass
        _reload_postfix()
    return {"changed": changed}


def _passwd_entry(address: str) -> str:
    for line in _lines(f"{MAIL_ETC}/passwd"):
        if _key(line, ":") == address:
            return line
    raise AgentError("not_found", f"no such mailbox: {address}")


@action("mail.mailbox.password")
def mailbox_password(*, address: str, password_hash: str) -> dict[str, Any]:
    address = _address(address)
    pw = _password_hash(password_hash)
    with _locked():
        rest = _passwd_entry(address).split(":", 2)[2]
        changed = _set_line("passwd", address, f"{address}:{pw}:{rest}", sep=":")
    return {"changed": changed}


@action("mail.mailbox.quota")
def mailbox_quota(*, address: str, quota_mb: int) -> dict[str, Any]:
    address = _address(address)
    quota = _quota(quota_mb)
    with _locked():
        line = re.sub(
            r"userdb_quota_rule=\*:storage=[0-9]+M",
            f"userdb_quota_rule=*:storage={quota}M",
            _passwd_entry(address),
        )
        changed = _set_line("passwd", address, line, sep=":")
    return {"changed": changed}


@action("mail.mailbox.remove")
def mailbox_remove(*, address: str, purge: bool = True) -> dict[str, Any]:
    address = _address(address)
    local, domain = address.split("@")
    with _locked():
        changed = _set_line("mailboxes", address, None)
        changed |= _set_line("passwd", address, None, sep=":")
        if purge and os.path.lexists(f"{VHOSTS}/{domain}/{local}"):
            _remove_tree(domain, local)
            changed = True
        system.run(["doveadm", "kick", address], check=False, timeout=30)
        _reload_postfix()
    return {"changed": changed}


@action("mail.forwarder.set")
def forwarder_set(*, source: str, targets: list[str]) -> dict[str, Any]:
    """Forward mail for ``source`` to ``targets`` (replacing an earlier forwarder)."""
    source = _address(source)
    dests = list(dict.fromkeys(_address(t) for t in targets))
    if not 1 <= len(dests) <= MAX_FORWARD_TARGETS:
        raise AgentError("invalid", f"a forwarder needs 1 to {MAX_FORWARD_TARGETS} targets")
    with _locked():
        _require_domain(source.split("@")[1])
        changed = _set_line("aliases", source, f"{source} {','.join(dests)}")
        _reload_postfix()
    return {"changed": changed}


@action("mail.forwarder.remove")
def forwarder_remove(*, source: str) -> dict[str, Any]:
    source = _address(source)
    with _locked():
        changed = _set_line("aliases", source, None)
        _reload_postfix()
    return {"changed": changed}


@action("mail.catchall.set")
def catchall_set(*, domain: str, target: str = "") -> dict[str, Any]:
    """Mail for unknown addresses of ``domain`` goes to ``target`` (empty: it is refused)."""
    domain = validate.domain(domain)
    line = f"@{domain} {_address(target)}" if target else None
    with _locked():
        if line:
            _require_domain(domain)
        changed = _set_line("catchall", "@" + domain, line)
        _reload_postfix()
    return {"changed": changed}


def _sieve_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reply_text(value: str, *, limit: int, multiline: bool, what: str) -> str:
    text = value.replace("\r\n", "\n").strip()
    allowed = "\n\t" if multiline else ""
    if not text or len(text) > limit:
        raise AgentError("invalid", f"the auto-reply {what} must have 1 to {limit} characters")
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text):
        raise AgentError("invalid", f"the auto-reply {what} has characters that cannot be sent")
    return text


@action("mail.autoreply.set")
def autoreply_set(
    *, address: str, subject: str = "", body: str = "", days: int = 1, enabled: bool = True
) -> dict[str, Any]:
    """A mailbox's auto-reply (Sieve vacation), or none (``enabled`` false)."""
    address = _address(address)
    local, domain = address.split("@")
    script = b""
    if enabled:
        subject = _reply_text(subject, limit=200, multiline=False, what="subject")
        body = _reply_text(body, limit=4000, multiline=True, what="text")
        days = validate.positive_int(days, name="the days between replies", maximum=30)
        script = (
            "# Managed by Hostwright: the mailbox's auto-reply.\n"
            'require ["vacation"];\n'
            f"vacation :days {days} :subject {_sieve_string(subject)} {_sieve_string(body)};\n"
        ).encode()
    uid, gid = _vmail()
    with _locked():
        _passwd_entry(address)
        with _dir(domain, local) as home:
            if enabled:
                changed = safefs.write_at(
                    home, ".dovecot.sieve", script, uid=uid, gid=gid, mode=0o600
                )
            else:
                changed = safefs.remove_at(home, ".dovecot.sieve")
            safefs.remove_at(home, ".dovecot.svbin")
    return {"changed": changed}


def _dkim_tables(domain: str, selector: str | None) -> bool:
    record = f"._domainkey.{domain}"
    keys = [x for x in _lines(f"{DKIM_DIR}/keytable") if not _key(x).endswith(record)]
    signing = [x for x in _lines(f"{DKIM_DIR}/signingtable") if _key(x) != f"*@{domain}"]
    if selector:
        keys.append(
            f"{selector}{record} {domain}:{selector}:{DKIM_DIR}/{domain}/{selector}.private"
        )
        signing.append(f"*@{domain} {selector}{record}")
    changed = _write(f"{DKIM_DIR}/keytable", keys, mode=0o640, group="opendkim")
    changed |= _write(f"{DKIM_DIR}/signingtable", signing, mode=0o640, group="opendkim")
    return changed


@action("mail.dkim.key")
def dkim_key(*, domain: str, selector: str) -> dict[str, Any]:
    """Make the domain's DKIM key for ``selector`` (kept if it exists); answers its public key
    (base64 DER, the ``p=`` of the DNS record). Nothing signs with it yet."""
    domain = validate.domain(domain)
    selector = _selector(selector)
    key = f"{DKIM_DIR}/{domain}/{selector}.private"
    changed = False
    with _locked():
        _require_domain(domain)
        dkim = pwd.getpwnam("opendkim")
        with contextlib.suppress(FileExistsError):
            os.mkdir(f"{DKIM_DIR}/{domain}", 0o750)
        os.chown(f"{DKIM_DIR}/{domain}", dkim.pw_uid, dkim.pw_gid, follow_symlinks=False)
        if not os.path.isfile(key) or os.path.islink(key):
            fd, tmp = system.scratch_file(".pem")
            os.close(fd)
            try:
                system.run(["openssl", "genrsa", "-out", tmp, "2048"], what="making a DKIM key")
                os.chown(tmp, dkim.pw_uid, dkim.pw_gid)
                os.chmod(tmp, 0o600)
                system.run(["mv", "-f", "--", tmp, key], what="storing the DKIM key")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            changed = True
        der = system.run(
            ["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"], what="reading the key"
        ).stdout
    public = base64.b64encode(der).decode()
    if not _PUBLIC_KEY.fullmatch(public):
        raise AgentError("failed", "the DKIM key could not be read")
    return {"changed": changed, "public_key": public}


@action("mail.dkim.activate")
def dkim_activate(*, domain: str, selector: str) -> dict[str, Any]:
    """Sign the domain's mail with the key of ``selector``; its other keys are deleted."""
    domain = validate.domain(domain)
    selector = _selector(selector)
    with _locked():
        _require_domain(domain)
        if not os.path.isfile(f"{DKIM_DIR}/{domain}/{selector}.private"):
            raise AgentError("not_found", f"no DKIM key {selector} for {domain} on this node")
        changed = _dkim_tables(domain, selector)
        for name in os.listdir(f"{DKIM_DIR}/{domain}"):
            if name.endswith(".private") and name != f"{selector}.private":
                os.unlink(f"{DKIM_DIR}/{domain}/{name}")
                changed = True
        _reload_opendkim()
    return {"changed": changed}


@action("mail.sni.refresh")
def sni_refresh() -> dict[str, Any]:
    """Offer each hosted domain's own certificate by SNI on SMTP, IMAP and POP3 (after a
    certificate was installed, renewed or removed)."""
    if not os.path.isfile(f"{MAIL_ETC}/domains"):
        return {"changed": False}
    sni: list[str] = []
    dovecot: list[str] = []
    with _locked():
        for domain in _domains():
            folder = f"{CERTS_DIR}/{domain}"
            chain, key = f"{folder}/fullchain.pem", f"{folder}/privkey.pem"
            if not (os.path.isfile(chain) and os.path.isfile(key)):
                continue
            valid = system.run(
                ["openssl", "x509", "-in", chain, "-noout", "-checkend", "0"], check=False
            )
            if valid.returncode != 0:
                continue
            san = system.run(
                ["openssl", "x509", "-in", chain, "-noout", "-ext", "subjectAltName"], check=False
            ).stdout.decode()
            for host in re.findall(r"DNS:([a-z0-9.-]+)", san):
                sni.append(f"{host} {key} {chain}")
                dovecot.append(
                    f"local_name {host} {{\n  ssl_cert = <{chain}\n  ssl_key = <{key}\n}}"
                )
        changed = _write(f"{MAIL_ETC}/sni", sni)
        if changed or not os.path.exists(f"{MAIL_ETC}/sni.db"):
            system.run(["postmap", "-F", f"hash:{MAIL_ETC}/sni"], what="building the SNI map")
        if _write(f"{MAIL_ETC}/dovecot-sni.conf", dovecot):
            system.run(["doveadm", "reload"], what="reloading Dovecot")
            changed = True
        _reload_postfix()
    return {"changed": changed}


@action("mail.sending.report")
def sending_report() -> dict[str, Any]:
    """Per account: messages sent in the last hour, its limit, refusals in the last two days."""
    if not os.path.isfile(POLICY):
        return {"changed": False, "accounts": []}
    out = system.run(
        ["runuser", "-u", "hwmailpolicy", "--", "/usr/bin/python3", POLICY, "report"],
        what="reading the sending report",
    ).stdout.decode()
    accounts = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {"changed": False, "accounts": accounts}
