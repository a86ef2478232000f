"""The agent's mail actions on this node's real Postfix, Dovecot and OpenDKIM, checked with
ordinary clients (smtplib, imaplib) and dkimpy."""

from __future__ import annotations

import email
import email.message
import imaplib
import os
import smtplib
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import bcrypt
import dkim
import pytest
from hwagent import mail, protocol
from hwagent.registry import load_all

ROOT = Path(__file__).resolve().parents[4]
PASSWORD = "correct horse battery"  # noqa: S105 (a test mailbox)
CERT = Path(mail.MAIL_ETC, "tls", "node.pem")

pytestmark = pytest.mark.node


@pytest.fixture(scope="module", autouse=True)
def mail_node() -> None:
    load_all()
    env = {**os.environ, "NODE_PROFILE": "test", "HW_NODE_LIB": str(ROOT / "deploy/node/lib.sh")}
    part = ROOT / "deploy/node/parts/80-mail.sh"
    done = subprocess.run(["bash", str(part)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def call(name: str, **args: Any) -> dict[str, Any]:
    answer = protocol.handle(
        {"id": "t", "actions": [{"action": name, "args": args}]}, tier="worker"
    )
    [result] = answer["results"]
    return result


def ok(name: str, **args: Any) -> dict[str, Any]:
    result = call(name, **args)
    assert result["ok"], result
    return result


def password_hash(password: str = PASSWORD) -> str:
    return "{BLF-CRYPT}" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def domain() -> Any:
    name = f"a{uuid.uuid4().hex[:10]}.test"
    ok("mail.domain.ensure", domain=name, account=f"u{uuid.uuid4().hex[:8]}")
    yield name
    ok("mail.domain.remove", domain=name, purge=True)


def tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERT))


def wait_for(address: str, subject: str) -> bytes:
    for _ in range(150):
        try:
            imap = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=tls(), timeout=15)
            imap.login(address, PASSWORD)
        except imaplib.IMAP4.error:
            time.sleep(0.1)  # Dovecot re-reads its passwd-file once a second
            continue
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        if found[0]:
            _, data = imap.fetch(found[0].split()[-1], "(RFC822)")
            imap.logout()
            part = data[0]
            assert isinstance(part, tuple)
            return part[1]
        imap.logout()
        time.sleep(0.1)
    raise AssertionError(f"{subject!r} never arrived in {address}")


def accepted(address: str) -> bool:
    """Whether Postfix accepts ``address`` yet (its reload reaches new smtpd processes only)."""
    for _ in range(50):
        with smtplib.SMTP("127.0.0.1", 25, timeout=15) as smtp:
            smtp.mail("probe@example.net")
            code, _ = smtp.rcpt(address)
            smtp.rset()
        if code == 250:
            return True
        time.sleep(0.1)
    return False


def submit(login: str, sender: str, to: str, subject: str) -> None:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("sent through the agent's mail setup")
    for _ in range(50):
        try:
            with smtplib.SMTP("127.0.0.1", 587, timeout=15) as smtp:
                smtp.starttls(context=tls())
                smtp.login(login, PASSWORD)
                smtp.send_message(msg)
            return
        except smtplib.SMTPAuthenticationError:
            time.sleep(0.1)  # the new mailbox's password is read within a second
    raise AssertionError(f"{login} could not log in")


def test_mailboxes_send_signed_mail_to_each_other(domain: str) -> None:
    # given two mailboxes and a DKIM key made and activated by the agent
    alice, bob = f"alice@{domain}", f"bob@{domain}"
    for address in (alice, bob):
        first = ok(
            "mail.mailbox.ensure", address=address, password_hash=password_hash(), quota_mb=20
        )
        assert first["changed"] is True
    key = ok("mail.dkim.key", domain=domain, selector="hwt1")["data"]["public_key"]
    assert ok("mail.dkim.key", domain=domain, selector="hwt1")["data"]["public_key"] == key
    ok("mail.dkim.activate", domain=domain, selector="hwt1")

    # when alice sends to bob through submission
    assert accepted(bob)
    subject = f"agent {uuid.uuid4().hex[:6]}"
    submit(alice, alice, bob, subject)

    # then bob reads it, signed with the key the agent answered
    raw = wait_for(bob, subject)
    record = f"v=DKIM1; k=rsa; p={key}".encode()
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)
    assert b"s=hwt1" in raw

    # and sending as an address of another account is refused
    other = f"o{uuid.uuid4().hex[:10]}.test"
    ok("mail.domain.ensure", domain=other, account=f"v{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            submit(alice, f"ceo@{other}", bob, "spoof")
    finally:
        ok("mail.domain.remove", domain=other, purge=True)


def test_actions_are_idempotent_and_keep_what_they_should(domain: str) -> None:
    address = f"info@{domain}"
    ok("mail.mailbox.ensure", address=address, password_hash=password_hash(), quota_mb=20)
    again = ok("mail.mailbox.ensure", address=address, password_hash=password_hash(), quota_mb=20)
    passwd = Path(mail.MAIL_ETC, "passwd").read_text()
    assert passwd.count(f"{address}:") == 1 and again["changed"] is True  # a new salt
    assert ok("mail.mailbox.quota", address=address, quota_mb=99)["changed"] is True
    assert ok("mail.mailbox.quota", address=address, quota_mb=99)["changed"] is False
    line = next(
        x for x in Path(mail.MAIL_ETC, "passwd").read_text().splitlines() if x.startswith(address)
    )
    assert line.endswith("userdb_quota_rule=*:storage=99M")
    new_hash = password_hash("another password")
    ok("mail.mailbox.password", address=address, password_hash=new_hash)
    line = next(
        x for x in Path(mail.MAIL_ETC, "passwd").read_text().splitlines() if x.startswith(address)
    )
    assert new_hash in line and line.endswith("storage=99M")
    # the derived tables follow
    assert f"{address} {address}" in Path(mail.MAIL_ETC, "selfaliases").read_text()
    assert f"@{domain} {address}" in Path(mail.MAIL_ETC, "senders").read_text()

    ok("mail.forwarder.set", source=f"sales@{domain}", targets=[address, "x@example.net"])
    assert f"sales@{domain} {address},x@example.net" in Path(mail.MAIL_ETC, "aliases").read_text()
    ok("mail.catchall.set", domain=domain, target=address)
    assert f"@{domain} {address}" in Path(mail.MAIL_ETC, "catchall").read_text()
    ok("mail.autoreply.set", address=address, subject='Away "now"', body="Back \\ soon")
    sieve = Path(mail.VHOSTS, domain, "info", ".dovecot.sieve")
    assert 'vacation :days 1 :subject "Away \\"now\\"" "Back \\\\ soon";' in sieve.read_text()
    assert sieve.stat().st_uid == mail.pwd.getpwnam("vmail").pw_uid
    ok("mail.autoreply.set", address=address, enabled=False)
    assert not sieve.exists()
    ok("mail.catchall.set", domain=domain)
    assert f"@{domain}" not in Path(mail.MAIL_ETC, "catchall").read_text()
    assert [address] == ok("mail.mailbox.list", domain=domain)["data"]["mailboxes"]

    ok("mail.mailbox.remove", address=address)
    assert f"{address}:" not in Path(mail.MAIL_ETC, "passwd").read_text()
    assert ok("mail.mailbox.remove", address=address)["changed"] is False


@pytest.mark.parametrize(
    ("name", "args", "code"),
    [
        (
            "mail.mailbox.ensure",
            {"address": "a b@x.test", "password_hash": "x", "quota_mb": 1},
            "invalid",
        ),
        (
            "mail.mailbox.ensure",
            {"address": "a@x.test", "password_hash": "{PLAIN}pw", "quota_mb": 1},
            "invalid",
        ),
        (
            "mail.mailbox.ensure",
            {"address": "a@nothere.test", "password_hash": None, "quota_mb": 1},
            "invalid",
        ),
        (
            "mail.mailbox.password",
            {"address": "ghost@nothere.test", "password_hash": "h"},
            "invalid",
        ),
        ("mail.domain.ensure", {"domain": "../etc"}, "invalid"),
        ("mail.domain.ensure", {"domain": "ok.test", "account": "Bad;id"}, "invalid"),
        ("mail.dkim.key", {"domain": "ok.test", "selector": "../x"}, "invalid"),
        ("mail.autoreply.set", {"address": "a@ok.test", "subject": "x\ny", "body": "b"}, "invalid"),
        ("mail.forwarder.set", {"source": "a@ok.test", "targets": []}, "invalid"),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(
    name: str, args: dict[str, Any], code: str
) -> None:
    before = Path(mail.MAIL_ETC, "passwd").read_bytes()
    result = call(name, **args)
    assert not result["ok"] and result["error"]["code"] == code, result
    assert Path(mail.MAIL_ETC, "passwd").read_bytes() == before


def test_a_mailbox_for_a_domain_not_set_up_is_not_found() -> None:
    result = call(
        "mail.mailbox.ensure",
        address="info@nothere-at-all.test",
        password_hash=password_hash(),
        quota_mb=5,
    )
    assert not result["ok"] and result["error"]["code"] == "not_found"


def test_the_sending_report_lists_the_accounts(domain: str) -> None:
    accounts = ok("mail.sending.report")["data"]["accounts"]
    assert any(domain in a["domains"] for a in accounts)
