"""Webmail: Roundcube on the node, logged in over HTTP with a mailbox's address and password."""

from __future__ import annotations

import email.message
import imaplib
import json
import re
import smtplib
import time
import uuid
from pathlib import Path

import pytest
import requests
from hwagent import mail as agent_mail

from provisioning.resources import mail as hwmail

from .conftest import run_part

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def webmail(mail_node) -> str:
    for part in ("30-nginx.sh", "40-php.sh", "82-webmail.sh"):
        run_part(part)
    return Path(hwmail.MAIL_ETC, "server-name").read_text().strip()


@pytest.fixture
def mailbox_address(mail_node):
    domain = f"w{uuid.uuid4().hex[:10]}.test"
    agent_mail.domain_ensure(domain=domain, account=f"u{uuid.uuid4().hex[:8]}")
    agent_mail.mailbox_ensure(
        address=f"reader@{domain}", password_hash=hwmail.hash_password(PASSWORD), quota_mb=20
    )
    yield f"reader@{domain}"
    agent_mail.domain_remove(domain=domain, purge=True)


class Webmail:
    """A browser's conversation with Roundcube: cookies, the login form's token, AJAX calls."""

    def __init__(self, server_name: str) -> None:
        self.http = requests.Session()
        self.http.headers["Host"] = server_name
        self.base = "http://127.0.0.1/"

    def login(self, user: str, password: str) -> requests.Response:
        for _ in range(50):
            page = self.http.get(self.base, timeout=15)
            if page.status_code != 502:
                break
            time.sleep(0.1)  # PHP-FPM is being reloaded (another account's pool changed)
        token = re.search(r'name="_token" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        return self.http.post(
            self.base + "?_task=login",
            data={
                "_token": token.group(1),
                "_task": "login",
                "_action": "login",
                "_timezone": "UTC",
                "_url": "",
                "_user": user,
                "_pass": password,
            },
            timeout=15,
        )

    def send(self, *, to: str, subject: str, text: str) -> requests.Response:
        """Compose and send a plain-text message, as the compose page's form does."""
        compose = self.http.get(self.base, params={"_task": "mail", "_action": "compose"})
        compose_id = re.search(r'"compose_id":"([^"]+)"', compose.text)
        token = re.search(r'"request_token":"([^"]+)"', compose.text)
        identity = re.search(r'<select name="_from"[^>]*>\s*<option value="(\d+)"', compose.text)
        assert compose_id and token, compose.text[:500]
        return self.http.post(
            self.base + "?_task=mail&_action=send",
            data={
                "_token": token.group(1),
                "_task": "mail",
                "_action": "send",
                "_id": compose_id.group(1),
                "_from": identity.group(1) if identity else "",
                "_to": to,
                "_subject": subject,
                "_message": text,
                "_is_html": "0",
                "_framed": "1",
            },
            timeout=30,
        )

    def inbox_listing(self, page: requests.Response) -> str:
        env = re.search(r'"request_token":"([^"]+)"', page.text)
        assert env, page.text[:500]
        listing = self.http.get(
            self.base,
            params={"_task": "mail", "_action": "list", "_mbox": "INBOX", "_remote": "1"},
            headers={"X-Roundcube-Request": env.group(1)},
            timeout=15,
        )
        return json.dumps(listing.json())


def login_to_inbox(client: Webmail, address: str) -> requests.Response:
    """Log in; Dovecot reads a new mailbox's password within a second, so retry until then."""
    for _ in range(50):
        page = client.login(address, PASSWORD)
        if '"task":"mail"' in page.text:
            return page
        time.sleep(0.1)
    raise AssertionError(f"webmail login of {address} never reached the inbox")


@pytest.mark.node
def test_roundcube_login_reaches_the_inbox(webmail, mailbox_address):
    # given a message in the mailbox
    subject = f"webmail {uuid.uuid4().hex[:6]}"
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "someone@example.net", mailbox_address, subject
    msg.set_content("read me in the browser")
    with smtplib.SMTP("127.0.0.1", 25, timeout=15) as smtp:
        smtp.send_message(msg)

    # when the customer logs in to webmail with the mailbox's address and password
    client = Webmail(webmail)
    page = login_to_inbox(client, mailbox_address)

    # then the inbox opens and lists the message
    assert page.status_code == 200
    assert '"task":"mail"' in page.text and '"mailbox":"INBOX"' in page.text
    listing = ""
    for _ in range(100):
        listing = client.inbox_listing(page)
        if subject in listing:
            break
        time.sleep(0.1)
    assert subject in listing


@pytest.mark.node
def test_roundcube_refuses_a_wrong_password(webmail, mailbox_address):
    client = Webmail(webmail)
    page = client.login(mailbox_address, "not the password")
    assert '"task":"login"' in page.text
    assert '"task":"mail"' not in page.text


@pytest.mark.node
def test_mail_sent_from_webmail_goes_through_submission(webmail, mailbox_address):
    # given a second mailbox of the same domain
    domain = mailbox_address.split("@")[1]
    agent_mail.mailbox_ensure(
        address=f"friend@{domain}", password_hash=hwmail.hash_password(PASSWORD), quota_mb=20
    )
    client = Webmail(webmail)
    login_to_inbox(client, mailbox_address)

    # when a message is sent from webmail
    subject = f"from webmail {uuid.uuid4().hex[:6]}"
    answer = client.send(to=f"friend@{domain}", subject=subject, text="typed in the browser")
    assert answer.status_code == 200

    # then it arrives, having passed submission (its Received header names the login's
    # authenticated submission, which applies the sender check, the limits and DKIM)
    for _ in range(100):
        imap = imaplib.IMAP4("127.0.0.1", 143, timeout=15)
        imap.login(f"friend@{domain}", PASSWORD)
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        if found[0]:
            _, data = imap.fetch(found[0].split()[0], "(RFC822)")
            imap.logout()
            break
        imap.logout()
        time.sleep(0.1)
    else:
        raise AssertionError("the message sent from webmail never arrived")
    part = data[0]
    assert isinstance(part, tuple)
    raw = part[1]
    assert b"typed in the browser" in raw
    assert b"with ESMTPSA" in raw  # authenticated submission over TLS
