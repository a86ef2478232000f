#!/usr/bin/python3
"""Who may send as which domain, and hourly sending limits per mailbox and per hosting account.

Postfix's ``spawn`` starts ``mail-sending.py milter`` per client connection, as the
``hwmailpolicy`` user: a mail filter (Sendmail's milter protocol, version 6) on port 25 and
submission. It knows who sends:

- a mailbox that logged in on submission (587, 465): the message's ``From:`` header must be an
  address of a domain of the mailbox's hosting account (Postfix checks the envelope sender
  itself), and the message counts against the mailbox's and its account's hourly limits;
- a process of a hosting account that connected to port 25 without a login (a site's PHP
  ``mail()`` through the node's sendmail wrapper, or any program of the account speaking
  SMTP): the account is the Linux user that owns the connecting socket. The kernel's socket
  table (``/proc/net/tcp``) names it: the client's address and port and the server's
  identify exactly one socket of this machine, and its uid is the one of the process that
  made it, which a customer cannot choose. Its envelope sender and ``From:`` must be
  addresses of the account's own mail domains, and its messages count against the account's
  hourly limit like its mailboxes' do. (Hosting accounts may not run Postfix's own
  ``sendmail``/``postdrop``: ``authorized_submit_users`` in ``80-mail.sh``.)
- anyone else (mail from the world, the node's system users): not this filter's business.

Limits come from ``/etc/hostwright/mail/limits``, one line per hosted domain, written by the
node agent from the account's plan::

    example.com  <account>  <messages per hour for the account>  <per mailbox>

A message counts once per recipient (a message to 30 people is 30 messages), over the last
sliding hour, at its end, once everything else about it was accepted: a message refused for its
sender or its ``From:`` never counts. Accepted sends and refusals are kept in a SQLite file,
so the limits hold across processes and restarts and the panel can list who reached a limit
(``mail-sending.py report``: one JSON object per account on stdout).

Standard library only: a node needs nothing from PyPI.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import sqlite3
import struct
import sys
import syslog
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

LIMITS = os.environ.get("HW_MAIL_LIMITS", "/etc/hostwright/mail/limits")
STATE = os.environ.get("HW_MAIL_POLICY_DB", "/var/lib/hostwright/mail-policy/sent.sqlite3")
SOCKET_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
HOUR = 3600
KEEP = 2 * 24 * HOUR  # refusals stay visible for two days


def read_limits(path: str = LIMITS) -> dict[str, tuple[str, int, int]]:
    limits: dict[str, tuple[str, int, int]] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) != 4 or not fields[2].isdigit() or not fields[3].isdigit():
                    continue
                limits[fields[0].lower()] = (fields[1], int(fields[2]), int(fields[3]))
    except FileNotFoundError:
        pass
    return limits


def connect(path: str = STATE) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS sent (at REAL, mailbox TEXT, account TEXT, count INTEGER)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS refused"
        " (at REAL, mailbox TEXT, account TEXT, count INTEGER, reason TEXT)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS sent_mailbox ON sent (mailbox, at)")
    db.execute("CREATE INDEX IF NOT EXISTS sent_account ON sent (account, at)")
    return db


def _clock(at: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(at))


def take(
    db: sqlite3.Connection,
    *,
    now: float,
    account: str,
    account_hour: int,
    count: int,
    who: str,
    mailbox: str = "",
    mailbox_hour: int = 0,
) -> str:
    """Count ``count`` messages of ``account`` (and of ``mailbox``, when a mailbox sends) if they
    fit in the last sliding hour's limits: answers ``""``, or the reason of a refusal, which is
    recorded for the report. ``who`` names the sender in the account's reason."""
    since = now - HOUR
    db.execute("BEGIN IMMEDIATE")  # one writer at a time: two sends cannot both slip under
    try:
        db.execute("DELETE FROM sent WHERE at < ?", (since,))
        db.execute("DELETE FROM refused WHERE at < ?", (now - KEEP,))
        reason = ""
        if mailbox:
            by_mailbox, first_mailbox = db.execute(
                "SELECT COALESCE(SUM(count), 0), MIN(at) FROM sent WHERE mailbox = ? AND at >= ?",
                (mailbox, since),
            ).fetchone()
            if by_mailbox + count > mailbox_hour:
                reason = (
                    f"{mailbox} may send {mailbox_hour} messages per hour and has sent"
                    f" {by_mailbox} (each recipient counts as one); sending is possible again"
                    f" after {_clock((first_mailbox or now) + HOUR)}"
                )
        if not reason:
            by_account, first_account = db.execute(
                "SELECT COALESCE(SUM(count), 0), MIN(at) FROM sent WHERE account = ? AND at >= ?",
                (account, since),
            ).fetchone()
            if by_account + count > account_hour:
                reason = (
                    f"{who} may send {account_hour} messages per hour and has sent"
                    f" {by_account} (each recipient counts as one); sending is possible again"
                    f" after {_clock((first_account or now) + HOUR)}"
                )
        if reason:
            db.execute(
                "INSERT INTO refused VALUES (?, ?, ?, ?, ?)", (now, mailbox, account, count, reason)
            )
        else:
            db.execute("INSERT INTO sent VALUES (?, ?, ?, ?)", (now, mailbox, account, count))
        db.execute("COMMIT")
        return reason
    except BaseException:
        db.execute("ROLLBACK")
        raise


# --- the milter ---------------------------------------------------------------------------------

# The account's marker in its passwd entry (GECOS), set by the node agent (hwagent.users).
ACCOUNT_TAG = "hostwright service "
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[IPAddress, int]


class Unidentified(Exception):
    """The kernel's socket table does not name one owner for a connection."""


def _endpoint(text: str) -> Endpoint:
    """An address:port of /proc/net/tcp{,6}: hex words in the kernel's byte order."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address: IPAddress = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(port, 16)


def socket_owner(
    client: Endpoint, server: Endpoint | None, tables: tuple[str, ...] = SOCKET_TABLES
) -> int | None:
    """The uid owning the connected socket at ``client`` whose peer is ``server``, when it is a
    socket of this machine (None: the client is elsewhere). Without ``server``, every socket
    at ``client`` must have the same owner."""
    owners: set[int] = set()
    port = f":{client[1]:04X}"
    for table in tables:
        try:
            with open(table, encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            # sl local rem st queues timer retransmits uid ...; st 01 is ESTABLISHED
            if len(fields) < 8 or not fields[1].endswith(port) or fields[3] != "01":
                continue
            if _endpoint(fields[1]) != client:
                continue
            if server is not None and _endpoint(fields[2]) != server:
                continue
            owners.add(int(fields[7]))
    if len(owners) > 1:
        raise Unidentified(f"sockets of several users at {client[0]}:{client[1]}")
    return owners.pop() if owners else None


def account_of(uid: int) -> str | None:
    """The hosting account a uid is (None: a system user of the node)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    tag = entry.pw_gecos.split(",")[0]
    service = tag.removeprefix(ACCOUNT_TAG)
    is_account = tag.startswith(ACCOUNT_TAG) and service.isascii() and service.isdigit()
    return entry.pw_name if is_account else None


def account_domains(limits: dict[str, tuple[str, int, int]], account: str) -> list[str]:
    return sorted(d for d, (owner, _a, _m) in limits.items() if owner == account)


def login_domains(limits: dict[str, tuple[str, int, int]], login: str) -> set[str]:
    """The domains a mailbox may send as: its account's (as smtpd_sender_login_maps says)."""
    domain = login.rsplit("@", 1)[1]
    entry = limits.get(domain)
    if entry is None:
        return {domain}
    return set(account_domains(limits, entry[0]))


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1].lower() if "@" in address else ""


# Milter protocol (libmilter's mfdef.h): commands in, replies out.
CONTINUE, ACCEPT, TEMPFAIL = b"c", b"a", b"t"
_WANT = 0x02 | 0x10 | 0x100 | 0x200  # no HELO, no body chunks, no unknown commands, no DATA
MAX_PACKET = 1 << 20


def _reply(code: int, text: str) -> bytes:
    # Postfix reads the text as a format ('%' is special): there is none in ours, keep it so.
    clean = " ".join(text.replace("%", "").split())
    return b"y" + f"{code} {code // 100}.7.1 {clean}".encode("utf-8", "replace") + b"\0"


def _log(message: str) -> None:
    syslog.syslog(syslog.LOG_MAIL | syslog.LOG_NOTICE, message)


class Milter:
    """One SMTP connection's filter: ``handle`` takes a command packet, answers a reply packet
    (``None`` when the protocol wants none, ``b""`` at the end)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        owner: Callable[[Endpoint, Endpoint | None], int | None] = socket_owner,
        limits: Callable[[], dict[str, tuple[str, int, int]]] = read_limits,
        database: Callable[[], sqlite3.Connection] = connect,
    ) -> None:
        self.clock, self.owner, self.limits, self.database = clock, owner, limits, database
        self.db: sqlite3.Connection | None = None
        self.macros: dict[str, str] = {}
        self.site = ""  # the hosting account whose process connected, if one did
        self._message()

    def _message(self) -> None:
        self.allowed: set[str] | None = None  # domains From: may use; None: not checked
        self.who = ""
        self.account = ""  # whose limits the message counts against ("": nobody's)
        self.account_hour = 0
        self.account_who = ""  # the account as the limit's refusal names it
        self.mailbox = ""
        self.mailbox_hour = 0
        self.recipients = 0
        self.froms: list[str] = []

    def handle(self, command: bytes, data: bytes) -> bytes | None:
        if command == b"O":
            _version, _actions, offered = struct.unpack("!III", data[:12])
            return b"O" + struct.pack("!III", 6, 0, offered & _WANT)
        if command == b"D":
            fields = data[1:].split(b"\0")
            for name, value in zip(fields[::2], fields[1::2], strict=False):
                self.macros[name.decode("ascii", "replace").strip("{}")] = value.decode(
                    "utf-8", "replace"
                )
            return None
        if command == b"C":
            return self.connected(data)
        if command == b"M":
            sender = data.split(b"\0")[0].decode("utf-8", "replace").strip().strip("<>")
            return self.mail_from(sender)
        if command == b"R":
            self.recipients += 1
            return CONTINUE
        if command == b"L":
            name, _, rest = data.partition(b"\0")
            if name.strip().lower() == b"from":
                self.froms.append(rest.rstrip(b"\0").decode("utf-8", "replace"))
            return CONTINUE
        if command == b"N":
            return self.end_of_headers()
        if command == b"E":
            return self.end_of_message()
        if command == b"A":
            self._message()
            return None
        if command == b"K":  # the next connection on the same stream
            self.macros, self.site = {}, ""
            self._message()
            return None
        if command == b"Q":
            return b""
        return CONTINUE  # HELO, DATA, body chunks, unknown commands: nothing to say

    def connected(self, data: bytes) -> bytes:
        _hostname, _, rest = data.partition(b"\0")
        family = rest[:1]
        if family not in (b"4", b"6") or len(rest) < 4:
            return CONTINUE  # not TCP: no process to look up
        (port,) = struct.unpack("!H", rest[1:3])
        text = rest[3:].rstrip(b"\0").decode("ascii", "replace").removeprefix("IPv6:")
        try:
            address: IPAddress = ipaddress.ip_address(text)
        except ValueError:
            return CONTINUE
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        server: Endpoint | None = None
        try:
            server_address = ipaddress.ip_address(
                self.macros.get("daemon_addr", "").removeprefix("IPv6:")
            )
            if isinstance(server_address, ipaddress.IPv6Address) and server_address.ipv4_mapped:
                server_address = server_address.ipv4_mapped
            server = (server_address, int(self.macros.get("daemon_port", "")))
        except ValueError:
            server = None
        try:
            uid = self.owner((address, port), server)
        except (Unidentified, OSError) as exc:
            _log(f"refused a connection from {address}:{port}: {exc}")
            return _reply(421, "the sending process cannot be identified, try again later")
        if uid is None:
            if address.is_loopback:
                _log(f"refused a connection from {address}:{port}: no socket of this machine")
                return _reply(421, "the sending process cannot be identified, try again later")
            return CONTINUE  # from elsewhere
        self.site = account_of(uid) or ""
        return CONTINUE

    def mail_from(self, sender: str) -> bytes:
        self._message()
        login = self.macros.get("auth_authen", "").strip().lower()
        limits = self.limits()
        if "@" in login:
            self.allowed, self.who = login_domains(limits, login), login
            domain = _domain_of(login)
            if domain in limits:
                self.account, self.account_hour, self.mailbox_hour = limits[domain]
                self.account_who, self.mailbox = f"the hosting account of {domain}", login
            return CONTINUE
        if not self.site:
            return ACCEPT  # neither a mailbox nor a hosting account: not ours to judge
        domains = account_domains(limits, self.site)
        if not domains:
            _log(f"refused mail from account {self.site}: it has no mail domain here")
            return _reply(
                550,
                f"the hosting account {self.site} has no mail domain on this server,"
                " so its sites cannot send mail",
            )
        who = f"the hosting account {self.site}"
        if _domain_of(sender) not in domains:
            _log(f"refused mail from account {self.site}: envelope sender <{sender}>")
            return _reply(
                550,
                f"{who} may only send as addresses of its own domains ({', '.join(domains)});"
                f" the sender <{sender}> is not one",
            )
        self.allowed, self.who, self.account = set(domains), who, self.site
        self.account_hour = max(limits[d][1] for d in domains)
        self.account_who = who
        return CONTINUE

    def end_of_headers(self) -> bytes:
        if self.allowed is None:
            return CONTINUE
        reply = self._check_from(self.allowed)
        if reply != CONTINUE:
            self.account = ""  # refused: nothing to count, whatever comes after
        return reply

    def _check_from(self, allowed: set[str]) -> bytes:
        if len(self.froms) != 1:
            return _reply(550, "a message needs exactly one From: header")
        from email.utils import getaddresses  # (only here: Python starts for every connection)

        addresses = [a for _name, a in getaddresses(self.froms) if a]
        if not addresses:
            return _reply(550, "the From: header has no address")
        for address in addresses:
            if _domain_of(address) not in allowed:
                _log(f"refused mail of {self.who}: From: {address}")
                return _reply(
                    550,
                    f"{self.who} may only send as addresses of its own domains;"
                    f" the From: address {address} is not one",
                )
        return CONTINUE

    def end_of_message(self) -> bytes:
        if not self.account:
            return CONTINUE
        if self.db is None:
            self.db = self.database()
        reason = take(
            self.db,
            now=self.clock(),
            account=self.account,
            account_hour=self.account_hour,
            count=max(1, self.recipients),
            who=self.account_who,
            mailbox=self.mailbox,
            mailbox_hour=self.mailbox_hour,
        )
        if reason:
            _log(f"refused mail of {self.who}: sending limit")
            return _reply(554, f"Sending limit reached: {reason}")
        return CONTINUE


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def serve_milter(rfile: BinaryIO, wfile: BinaryIO, milter: Milter | None = None) -> None:
    """Answer one connection's milter packets until Postfix quits or hangs up."""
    milter = milter or Milter()
    while True:
        head = _read_exact(rfile, 4)
        if not head:
            return
        (size,) = struct.unpack("!I", head)
        if not 0 < size <= MAX_PACKET:
            return
        packet = _read_exact(rfile, size)
        if not packet:
            return
        try:
            reply = milter.handle(packet[:1], packet[1:])
        except sqlite3.Error as exc:
            # The counts cannot be read: defer rather than send past a limit or lose the mail.
            _log(f"sending limits cannot be checked: {exc}")
            reply = TEMPFAIL
        if reply is None:
            continue
        if reply == b"":
            return
        wfile.write(struct.pack("!I", len(reply)) + reply)
        wfile.flush()


def report(stdout: TextIO) -> None:
    """Per account: messages sent in the last hour, its limit, refusals in the last two days."""
    import json

    db = connect()
    now = time.time()
    limits = read_limits()
    accounts: dict[str, dict[str, Any]] = {}
    for domain, (account, account_hour, _mailbox_hour) in limits.items():
        entry = accounts.setdefault(
            account,
            {"account": account, "domains": [], "limit": account_hour, "sent": 0, "refused": 0},
        )
        entry["domains"].append(domain)
    for account, sent in db.execute(
        "SELECT account, SUM(count) FROM sent WHERE at >= ? GROUP BY account", (now - HOUR,)
    ):
        accounts.setdefault(account, {"account": account, "domains": [], "limit": 0, "refused": 0})
        accounts[account]["sent"] = sent
    for account, refused, last in db.execute(
        "SELECT account, COUNT(*), MAX(at) FROM refused GROUP BY account"
    ):
        entry = accounts.setdefault(account, {"account": account, "domains": [], "limit": 0})
        entry.setdefault("sent", 0)
        entry["refused"] = refused
        entry["last_refused"] = int(last)
    for entry in sorted(accounts.values(), key=lambda e: str(e["account"])):
        stdout.write(json.dumps(entry, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["report"]:
        report(sys.stdout)
    elif sys.argv[1:] != ["milter"]:
        sys.exit("usage: mail-sending.py milter|report")
    else:
        syslog.openlog("hostwright/mail-milter", 0, syslog.LOG_MAIL)
        # spawn joins stderr to the client's socket: a traceback there would be read as a
        # milter reply. Postfix treats a filter that fails as "try again later".
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            serve_milter(sys.stdin.buffer, sys.stdout.buffer)
        except Exception as exc:
            _log(f"failed: {exc!r}")
            raise
