#!/usr/bin/python3
"""Postfix policy service: hourly sending limits per mailbox and per hosting account.

Postfix's ``spawn`` starts one of these per submission smtpd and writes policy requests to its
stdin (attribute lines, an empty line ends a request); the answer is one ``action=...`` line
and an empty line. It is asked at the end of each submitted message (``sasl_username`` is the
mailbox that logged in, ``recipient_count`` how many recipients the message has).

Limits come from ``/etc/hostwright/mail/limits``, one line per hosted domain, written by the
panel from the account's plan::

    example.com  <account>  <messages per hour for the account>  <per mailbox>

A message counts once per recipient (a message to 30 people is 30 messages), over the last
sliding hour. Accepted sends and refusals are kept in a SQLite file, so the limits hold across
processes and restarts and the panel can list who reached a limit
(``mail-policy.py report``: one JSON object per account on stdout).

Standard library only: a node needs nothing from PyPI.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from typing import Any, TextIO

LIMITS = os.environ.get("HW_MAIL_LIMITS", "/etc/hostwright/mail/limits")
STATE = os.environ.get("HW_MAIL_POLICY_DB", "/var/lib/hostwright/mail-policy/sent.sqlite3")
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


def decide(db: sqlite3.Connection, request: dict[str, str], now: float) -> str:
    """The policy answer for one request: ``DUNNO`` or a refusal with its reason."""
    login = request.get("sasl_username", "").strip().lower()
    if request.get("protocol_state", "").upper() != "END-OF-MESSAGE" or "@" not in login:
        return "DUNNO"
    domain = login.rsplit("@", 1)[1]
    limit = read_limits().get(domain)
    if limit is None:
        return "DUNNO"
    account, account_hour, mailbox_hour = limit
    try:
        count = max(1, int(request.get("recipient_count", "1") or 1))
    except ValueError:
        count = 1
    since = now - HOUR
    db.execute("BEGIN IMMEDIATE")  # one writer at a time: two sends cannot both slip under
    try:
        db.execute("DELETE FROM sent WHERE at < ?", (since,))
        db.execute("DELETE FROM refused WHERE at < ?", (now - KEEP,))
        by_mailbox, first_mailbox = db.execute(
            "SELECT COALESCE(SUM(count), 0), MIN(at) FROM sent WHERE mailbox = ? AND at >= ?",
            (login, since),
        ).fetchone()
        by_account, first_account = db.execute(
            "SELECT COALESCE(SUM(count), 0), MIN(at) FROM sent WHERE account = ? AND at >= ?",
            (account, since),
        ).fetchone()
        reason = ""
        if by_mailbox + count > mailbox_hour:
            reason = (
                f"{login} may send {mailbox_hour} messages per hour and has sent {by_mailbox}"
                f" (each recipient counts as one); sending is possible again after"
                f" {_clock((first_mailbox or now) + HOUR)}"
            )
        elif by_account + count > account_hour:
            reason = (
                f"the hosting account of {domain} may send {account_hour} messages per hour"
                f" and has sent {by_account} (each recipient counts as one); sending is possible"
                f" again after {_clock((first_account or now) + HOUR)}"
            )
        if reason:
            db.execute(
                "INSERT INTO refused VALUES (?, ?, ?, ?, ?)", (now, login, account, count, reason)
            )
            db.execute("COMMIT")
            return f"REJECT 5.7.1 Sending limit reached: {reason}"
        db.execute("INSERT INTO sent VALUES (?, ?, ?, ?)", (now, login, account, count))
        db.execute("COMMIT")
        return "DUNNO"
    except BaseException:
        db.execute("ROLLBACK")
        raise


def serve(stdin: TextIO, stdout: TextIO) -> None:
    db = connect()
    request: dict[str, str] = {}
    for raw in stdin:
        line = raw.rstrip("\n")
        if line:
            name, _, value = line.partition("=")
            request[name] = value
            continue
        try:
            answer = decide(db, request, time.time())
        except sqlite3.Error as exc:
            # The state cannot be read: defer rather than send past a limit or lose the mail.
            answer = f"DEFER_IF_PERMIT 4.3.0 sending limits cannot be checked now ({exc})"
        stdout.write(f"action={answer}\n\n")
        stdout.flush()
        request = {}


def report(stdout: TextIO) -> None:
    """Per account: messages sent in the last hour, its limit, refusals in the last two days."""
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
    else:
        serve(sys.stdin, sys.stdout)
