"""Mail on the node's real Postfix and Dovecot: SMTP in, IMAP out, quotas, forwarders."""

from __future__ import annotations

import email.message
import imaplib
import smtplib
import time
import uuid
from pathlib import Path

import pytest
from hwagent import mail as agent_mail
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import mail as hwmail
from provisioning.validators import validate_forward_targets, validate_local_part, validate_quota

PASSWORD = "correct horse battery"


@pytest.fixture
def mail_domain(mail_node):
    domain = f"m{uuid.uuid4().hex[:10]}.test"
    agent_mail.domain_ensure(domain=domain)
    yield domain
    agent_mail.domain_remove(domain=domain, purge=True)


def send(to: str, subject: str, body: str = "hello") -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "sender@example.net"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as smtp:
        smtp.send_message(msg)


def imap_login(address: str, password: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", 143, timeout=10)
    imap.login(address, password)
    return imap


def recipient_accepted(address: str) -> bool:
    """Whether Postfix accepts ``address`` at RCPT TO (nothing is sent)."""
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as smtp:
        smtp.mail("sender@example.net")
        code, _ = smtp.rcpt(address)
        smtp.rset()
    return code == 250


def login_works(address: str, password: str) -> bool:
    try:
        imap_login(address, password).logout()
    except imaplib.IMAP4.error:
        return False
    return True


def settles(check, *, attempts: int = 50) -> bool:
    """Dovecot re-reads its passwd-file at most once a second: poll until ``check`` holds."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.1)
    return False


def wait_for_subject(address: str, password: str, subject: str) -> bytes:
    """Delivery is asynchronous (Postfix queues, then LMTP): poll the mailbox."""
    for _ in range(100):
        imap = imap_login(address, password)
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        if found[0]:
            _, data = imap.fetch(found[0].split()[0], "(RFC822)")
            imap.logout()
            message = data[0]
            assert isinstance(message, tuple)
            return message[1]
        imap.logout()
        time.sleep(0.1)
    raise AssertionError(f"{subject!r} never arrived in {address}")


@pytest.mark.node
def test_mail_sent_over_smtp_is_read_back_over_imap(mail_domain):
    # given a mailbox with a password
    address = f"info@{mail_domain}"
    agent_mail.mailbox_ensure(
        address=f"info@{mail_domain}",
        password_hash=hwmail.hash_password(PASSWORD),
        quota_mb=50,
    )

    # when a message is sent to it over SMTP
    subject = f"welcome {uuid.uuid4().hex[:6]}"
    send(address, subject, "your hosting is ready")

    # then it can be read over IMAP with the mailbox's password, and the quota is the one set
    raw = wait_for_subject(address, PASSWORD, subject)
    assert b"your hosting is ready" in raw
    imap = imap_login(address, PASSWORD)
    _, quota = imap.getquotaroot("INBOX")
    assert b"STORAGE" in quota[1][0] and quota[1][0].endswith(b" 51200)")
    imap.logout()


@pytest.mark.node
def test_creating_a_mailbox_twice_leaves_one_entry_and_the_last_password(mail_domain):
    # given a mailbox created twice, the second time with a new password (a retried step)
    for password in ("first password", "second password"):
        agent_mail.mailbox_ensure(
            address=f"twice@{mail_domain}",
            password_hash=hwmail.hash_password(password),
            quota_mb=10,
        )

    # then the files hold one entry and only the second password works
    passwd = Path(hwmail.MAIL_ETC, "passwd").read_text()
    assert passwd.count(f"twice@{mail_domain}:") == 1
    address = f"twice@{mail_domain}"
    assert settles(lambda: login_works(address, "second password"))
    assert not login_works(address, "first password")


@pytest.mark.node
def test_password_change_and_delete(mail_domain):
    # given a mailbox
    address = f"bob@{mail_domain}"
    agent_mail.mailbox_ensure(
        address=f"bob@{mail_domain}",
        password_hash=hwmail.hash_password(PASSWORD),
        quota_mb=20,
    )

    # when its password changes
    agent_mail.mailbox_password(
        address=address, password_hash=hwmail.hash_password("a brand new secret")
    )

    # then only the new password logs in, and the quota is kept
    assert settles(lambda: not login_works(address, PASSWORD))
    imap = imap_login(address, "a brand new secret")
    _, quota = imap.getquotaroot("INBOX")
    assert quota[1][0].endswith(b" 20480)")
    imap.logout()

    # when it is deleted (twice), then it can no longer log in nor receive mail
    agent_mail.mailbox_remove(address=address)
    agent_mail.mailbox_remove(address=address)
    assert settles(lambda: not login_works(address, "a brand new secret"))
    # (Postfix's reload is asynchronous: an smtpd started before it may answer once more)
    assert settles(lambda: not recipient_accepted(address))


@pytest.mark.node
def test_password_change_for_a_missing_mailbox_fails(mail_domain):
    with pytest.raises(AgentError) as refused:
        agent_mail.mailbox_password(
            address=f"ghost@{mail_domain}", password_hash=hwmail.hash_password(PASSWORD)
        )
    assert refused.value.code == "not_found"


@pytest.mark.node
def test_forwarder_delivers_to_the_target_mailbox(mail_domain):
    # given a mailbox and a forwarder from sales@ to it
    agent_mail.mailbox_ensure(
        address=f"info@{mail_domain}",
        password_hash=hwmail.hash_password(PASSWORD),
        quota_mb=10,
    )
    agent_mail.forwarder_set(source=f"sales@{mail_domain}", targets=[f"info@{mail_domain}"])

    # when mail goes to sales@
    subject = f"order {uuid.uuid4().hex[:6]}"
    send(f"sales@{mail_domain}", subject)

    # then it arrives in info@
    wait_for_subject(f"info@{mail_domain}", PASSWORD, subject)

    # and once the forwarder is deleted, sales@ is refused
    agent_mail.forwarder_remove(source=f"sales@{mail_domain}")
    assert settles(lambda: not recipient_accepted(f"sales@{mail_domain}"))


@pytest.mark.node
def test_mailbox_for_a_domain_not_set_up_is_refused_on_the_node(mail_node):
    with pytest.raises(AgentError) as refused:
        agent_mail.mailbox_ensure(
            address="info@not-here.test", password_hash=hwmail.hash_password(PASSWORD), quota_mb=10
        )
    assert refused.value.code == "not_found"


@pytest.mark.parametrize(
    "local_part", ["", "a b", "../etc", "x;reboot", "$(id)", "a..b", ".lead", "UPPER\n"]
)
def test_bad_mailbox_names_are_refused_before_anything_reaches_the_node(local_part):
    with pytest.raises(ProvisioningRefused):
        validate_local_part(local_part)


def test_quota_and_forward_limits():
    for quota in (0, -1, True, "10", 2 * 1024 * 1024):
        with pytest.raises(ProvisioningRefused, match="quota"):
            validate_quota(quota)
    with pytest.raises(ProvisioningRefused, match="at most"):
        validate_forward_targets([f"t{i}@example.net" for i in range(21)])
    with pytest.raises(ProvisioningRefused, match="at least one"):
        validate_forward_targets([])
    assert validate_forward_targets(["a@example.net", "a@example.net"]) == ["a@example.net"]
