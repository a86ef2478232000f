"""Mail as customers' clients use it, on the node's real Postfix, Dovecot and OpenDKIM.

Submission with SMTP AUTH over STARTTLS (587) and implicit TLS (465), IMAPS and POP3S, the
sender restricted to the login's own account, DKIM signatures checked with dkimpy against the
key the node's PowerDNS publishes, SPF and DMARC as receivers evaluate them, the hourly sending
limit, catch-all, auto-reply and quota changes. Only loopback is reached.
"""

from __future__ import annotations

import email
import email.message
import imaplib
import poplib
import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import dns.resolver
import pytest
import spf
from hwagent import mail as agent_mail
from hwagent import protocol
from hwagent.errors import AgentError
from hwagent.registry import load_all

from provisioning.errors import ProvisioningRefused
from provisioning.resources import dns as hwdns
from provisioning.resources import mail as hwmail
from provisioning.usage import parse_mail_sending

from .conftest import DNS_PORT, AgentZones

PASSWORD = "correct horse battery"
NS = ["ns1.hostwright.test", "ns2.hostwright.test"]
NODE_CERT = Path(hwmail.MAIL_ETC, "tls", "node.pem")


@dataclass
class Hosted:
    domain: str
    account: str
    selector: str

    def address(self, local: str) -> str:
        return f"{local}@{self.domain}"


def node_resolver() -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = DNS_PORT
    resolver.lifetime = 5
    return resolver


def txt(name: str) -> list[str]:
    answer = node_resolver().resolve(name, "TXT")
    return [b"".join(r.strings).decode() for r in answer]


def publish_dkim(pdns: AgentZones, hosted: Hosted, selector: str) -> None:
    """What the panel's step does: make the key on the node, publish it, then sign with it."""
    made = agent_mail.dkim_key(domain=hosted.domain, selector=selector)
    name, text = hwmail.dkim_record(selector=selector, public_key=made["public_key"])
    pdns.replace_rrset(
        hosted.domain,
        hwdns.make_rrset(zone=hosted.domain, name=name, rtype="TXT", contents=[text], ttl=300),
    )
    agent_mail.dkim_activate(domain=hosted.domain, selector=selector)
    hosted.selector = selector


@pytest.fixture
def host_domain(mail_node, pdns) -> Iterator:
    made: list[Hosted] = []

    def make(*, account: str | None = None, account_hour: int = 500, mailbox_hour: int = 100):
        domain = f"c{uuid.uuid4().hex[:10]}.test"
        hosted = Hosted(domain=domain, account=account or f"u{uuid.uuid4().hex[:8]}", selector="")
        made.append(hosted)
        pdns.create_zone(
            domain,
            hwdns.zone_rrsets(domain=domain, ipv4="127.0.0.1", nameservers=NS, serial=1),
        )
        agent_mail.domain_ensure(
            domain=domain,
            account=hosted.account,
            account_hour=account_hour,
            mailbox_hour=mailbox_hour,
        )
        publish_dkim(pdns, hosted, "hw" + uuid.uuid4().hex[:8])
        return hosted

    yield make
    for hosted in made:
        agent_mail.domain_remove(domain=hosted.domain, purge=True)
        pdns.delete_zone(hosted.domain)


def mailbox(hosted: Hosted, local: str, *, quota_mb: int = 50) -> str:
    agent_mail.mailbox_ensure(
        address=hosted.address(local),
        password_hash=hwmail.hash_password(PASSWORD),
        quota_mb=quota_mb,
    )
    return hosted.address(local)


def tls() -> ssl.SSLContext:
    """Clients verify the node's certificate (made for the mail server name and 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(NODE_CERT))


def message(sender: str, to: str, subject: str, body: str = "hello") -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{sender.split('@')[1]}>"
    msg.set_content(body)
    return msg


def submit(
    login: str, msg: email.message.EmailMessage, *, port: int = 587, password: str = PASSWORD
) -> None:
    if port == 465:
        with smtplib.SMTP_SSL("127.0.0.1", 465, context=tls(), timeout=15) as smtp:
            smtp.login(login, password)
            smtp.send_message(msg)
        return
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.starttls(context=tls())
        smtp.login(login, password)
        smtp.send_message(msg)


def imaps(address: str, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=tls(), timeout=15)
    imap.login(address, password)
    return imap


def wait_for(address: str, subject: str) -> bytes:
    """Delivery is asynchronous (queue, then LMTP): poll the mailbox over IMAPS."""
    for _ in range(150):
        imap = imaps(address)
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


def dkim_dns(name: bytes, timeout: int = 5) -> bytes:
    """dkimpy's key lookup, answered by the node's PowerDNS."""
    return "".join(txt(name.decode().rstrip("."))).encode()


@pytest.mark.node
@pytest.mark.parametrize("port", [587, 465])
def test_a_mailbox_sends_with_auth_over_tls_and_the_other_customer_reads_it_signed(
    host_domain, port
):
    # given two customers, each with a mailbox
    alice_host, bob_host = host_domain(), host_domain()
    alice, bob = mailbox(alice_host, "alice"), mailbox(bob_host, "bob")

    # when alice submits a message to bob with her password (STARTTLS on 587, TLS on 465)
    subject = f"over {port} {uuid.uuid4().hex[:6]}"
    submit(alice, message(alice, bob, subject, "the quarterly numbers"), port=port)

    # then bob reads it over IMAPS, signed with the key alice's zone publishes
    raw = wait_for(bob, subject)
    assert b"the quarterly numbers" in raw
    received = email.message_from_bytes(raw)
    signature = received["DKIM-Signature"]
    assert signature is not None
    assert f"d={alice_host.domain}" in signature and f"s={alice_host.selector}" in signature
    assert dkim.verify(raw, dnsfunc=dkim_dns)

    # and a changed body no longer verifies (the check is real)
    assert not dkim.verify(raw.replace(b"quarterly", b"monthly"), dnsfunc=dkim_dns)


@pytest.mark.node
def test_submission_wants_tls_before_auth_and_a_right_password(host_domain):
    hosted = host_domain()
    address = mailbox(hosted, "info")

    # 587 offers no AUTH before STARTTLS
    with smtplib.SMTP("127.0.0.1", 587, timeout=15) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login(address, PASSWORD)
        # nor does it relay without a login
        smtp.starttls(context=tls())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail(address, ["someone@example.net"], b"Subject: x\r\n\r\nx")

    # a wrong password is refused on 587, 465, IMAPS and POP3S
    for port in (587, 465):
        with pytest.raises(smtplib.SMTPAuthenticationError):
            submit(address, message(address, address, "x"), port=port, password="wrong password!")
    with pytest.raises(imaplib.IMAP4.error):
        imaps(address, "wrong password!")
    pop = poplib.POP3_SSL("127.0.0.1", 995, context=tls(), timeout=15)
    pop.user(address)
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong password!")
    pop.close()


@pytest.mark.node
def test_sending_as_another_customers_domain_is_refused(host_domain):
    # given two customers, and a second domain of alice's account
    alice_host, bob_host = host_domain(), host_domain()
    alice_second = host_domain(account=alice_host.account)
    alice, bob = mailbox(alice_host, "alice"), mailbox(bob_host, "bob")
    mailbox(alice_second, "sales")

    # then alice may not send as bob, nor as a domain nobody hosts here
    for sender in (bob, f"ceo@{bob_host.domain}", "someone@example.org"):
        # (Postfix answers MAIL FROM at RCPT TO, where the refusal is reported)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            submit(alice, message(sender, bob, "spoof"))
        [(code, text)] = refused.value.recipients.values()
        assert code == 553
        assert f"Sender address rejected: not owned by user {alice}".encode() in text

    # nor put bob's domain in the From: header with her own envelope sender (what DKIM signs
    # and receivers show)
    forged = message(f"ceo@{bob_host.domain}", bob, "spoof header")
    with smtplib.SMTP("127.0.0.1", 587, timeout=15) as smtp:
        smtp.starttls(context=tls())
        smtp.login(alice, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused_header:
            smtp.send_message(forged, from_addr=alice)
    assert refused_header.value.smtp_code == 550
    assert f"the From: address ceo@{bob_host.domain} is not one" in str(refused_header.value)

    # but she may send as any address of her own account's domains
    subject = f"own domain {uuid.uuid4().hex[:6]}"
    submit(alice, message(f"sales@{alice_second.domain}", bob, subject))
    raw = wait_for(bob, subject)
    assert dkim.verify(raw, dnsfunc=dkim_dns)


def sending_report() -> dict:
    """The node agent's sending report, as usage collection reads it, per account."""
    load_all()
    [report] = protocol.handle(
        {"id": "t", "actions": [{"action": "mail.sending.report", "args": {}}]}, tier="worker"
    )["results"]
    assert report["ok"], report
    return parse_mail_sending(report["data"]["accounts"])


@pytest.mark.node
def test_a_message_refused_for_its_from_header_is_not_counted(host_domain):
    # given a mailbox whose account may send 2 messages an hour, and another customer
    alice_host, bob_host = host_domain(account_hour=2, mailbox_hour=2), host_domain()
    alice, bob = mailbox(alice_host, "alice"), mailbox(bob_host, "bob")

    # when she submits a message with the other customer's domain in From:
    with smtplib.SMTP("127.0.0.1", 587, timeout=15) as smtp:
        smtp.starttls(context=tls())
        smtp.login(alice, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.send_message(message(f"ceo@{bob_host.domain}", bob, "spoof"), from_addr=alice)
    assert refused.value.smtp_code == 550

    # then it counts against neither her mailbox's hourly limit nor her account's
    assert sending_report()[alice_host.account].sent_last_hour == 0
    subjects = [f"after the refusal {n} {uuid.uuid4().hex[:6]}" for n in range(2)]
    for subject in subjects:
        submit(alice, message(alice, bob, subject))
    assert sending_report()[alice_host.account].sent_last_hour == 2
    wait_for(bob, subjects[1])


@pytest.mark.node
def test_spf_passes_for_the_node_and_fails_for_another_address(host_domain, monkeypatch):
    hosted = host_domain()
    monkeypatch.setattr(dns.resolver, "default_resolver", node_resolver())
    sender = hosted.address("info")

    result, _ = spf.check2(i="127.0.0.1", s=sender, h=f"mail.{hosted.domain}")
    assert result == "pass"
    result, _ = spf.check2(i="192.0.2.44", s=sender, h="elsewhere.example")
    assert result == "fail"


def parse_dmarc(record: str) -> dict[str, str]:
    """RFC 7489 section 6.4: tag=value pairs separated by ';', v=DMARC1 first, p required."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        assert sep, f"not a tag: {part!r}"
        name = name.strip()
        assert name not in tags, f"{name} given twice"
        tags[name] = value.strip()
    assert next(iter(tags.items())) == ("v", "DMARC1")
    assert tags["p"] in ("none", "quarantine", "reject")
    for uri in tags.get("rua", "").split(","):
        assert not uri or uri.startswith("mailto:")
    return tags


@pytest.mark.node
def test_dmarc_record_parses(host_domain):
    hosted = host_domain()
    [record] = txt(f"_dmarc.{hosted.domain}")
    tags = parse_dmarc(record)
    assert tags["p"] == "none"
    assert tags["rua"] == f"mailto:postmaster@{hosted.domain}"
    assert parse_dmarc(hwmail.dmarc_text(domain="example.com", policy="reject"))["p"] == "reject"
    with pytest.raises(ProvisioningRefused):
        hwmail.dmarc_text(domain="example.com", policy="p=none; rua=mailto:x@evil.example")


@pytest.mark.node
def test_the_hourly_limits_bounce_with_a_clear_reason_and_are_reported(host_domain):
    # given an account allowed 3 messages an hour, 2 per mailbox
    hosted = host_domain(account_hour=3, mailbox_hour=2)
    first, second = mailbox(hosted, "first"), mailbox(hosted, "second")
    other = mailbox(host_domain(), "other")

    # when the first mailbox sends twice, the third message is refused with the reason
    submit(first, message(first, other, "one"))
    submit(first, message(first, other, "two"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(first, message(first, other, "three"))
    assert refused.value.smtp_code == 554
    reason = str(refused.value)
    assert f"Sending limit reached: {first} may send 2 messages per hour" in reason

    # and the second mailbox may send once more before the account's limit stops it
    submit(second, message(second, other, "four"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(second, message(second, other, "five"))
    assert "the hosting account of" in str(refused.value)
    assert "may send 3 messages per hour" in str(refused.value)

    # then the node agent reports the account as having reached its limit, and the panel reads
    # that report as usage collection does
    load_all()
    [report] = protocol.handle(
        {"id": "t", "actions": [{"action": "mail.sending.report", "args": {}}]}, tier="worker"
    )["results"]
    assert report["ok"], report
    entries = {e["account"]: e for e in report["data"]["accounts"]}
    assert entries[hosted.account]["limit"] == 3
    sending = parse_mail_sending(report["data"]["accounts"])[hosted.account]
    assert (sending.sent_last_hour, sending.refused) == (3, 2)
    assert sending.last_refused is not None


@pytest.mark.node
def test_clients_get_tls_on_every_port(host_domain):
    hosted = host_domain()
    address = mailbox(hosted, "info")
    mailbox_msg = f"pop {uuid.uuid4().hex[:6]}"
    with smtplib.SMTP("127.0.0.1", 25, timeout=15) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        smtp.starttls(context=tls())
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # port 25 is for receiving only
        smtp.send_message(message("someone@example.net", address, mailbox_msg))
    wait_for(address, mailbox_msg)

    imap = imaplib.IMAP4("127.0.0.1", 143, timeout=15)
    assert "STARTTLS" in imap.capabilities
    imap.starttls(ssl_context=tls())
    imap.login(address, PASSWORD)
    imap.logout()

    pop = poplib.POP3("127.0.0.1", 110, timeout=15)
    pop.stls(context=tls())
    pop.user(address)
    pop.pass_(PASSWORD)
    count, _size = pop.stat()
    assert count == 1
    pop.quit()


@pytest.mark.node
def test_catch_all_takes_unknown_addresses_only(host_domain):
    hosted = host_domain()
    info, sales = mailbox(hosted, "info"), mailbox(hosted, "sales")
    agent_mail.catchall_set(domain=hosted.domain, target=info)

    # mail to an unknown address lands in the catch-all; a mailbox keeps its own mail
    for to, subject in ((f"nobody@{hosted.domain}", "lost"), (sales, "for sales")):
        with smtplib.SMTP("127.0.0.1", 25, timeout=15) as smtp:
            smtp.send_message(message("someone@example.net", to, subject))
    wait_for(info, "lost")
    wait_for(sales, "for sales")
    imap = imaps(info)
    imap.select("INBOX")
    assert imap.search(None, "SUBJECT", '"for sales"')[1] == [b""]
    imap.logout()

    # once deleted, unknown addresses are refused again
    agent_mail.catchall_set(domain=hosted.domain, target="")
    for _ in range(50):
        with smtplib.SMTP("127.0.0.1", 25, timeout=15) as smtp:
            smtp.mail("someone@example.net")
            code, _ = smtp.rcpt(f"nobody@{hosted.domain}")
        if code != 250:
            break
        time.sleep(0.1)
    assert code == 550


@pytest.mark.node
def test_auto_reply_answers_once_and_is_signed(host_domain):
    alice_host, bob_host = host_domain(), host_domain()
    alice, bob = mailbox(alice_host, "alice"), mailbox(bob_host, "bob")
    agent_mail.autoreply_set(
        address=bob,
        subject='Away "until" Monday',
        body="I am away.\nBack on Monday \\o/",
    )

    submit(alice, message(alice, bob, "are you there"))
    wait_for(bob, "are you there")
    reply = wait_for(alice, "Away")
    parsed = email.message_from_bytes(reply)
    assert parsed["Subject"] == 'Away "until" Monday'
    body = parsed.get_payload(decode=True)
    assert isinstance(body, bytes) and "Back on Monday \\o/" in body.decode()
    assert dkim.verify(reply, dnsfunc=dkim_dns)

    agent_mail.autoreply_set(address=bob, enabled=False)
    assert not Path(hwmail.VHOSTS, bob_host.domain, "bob", ".dovecot.sieve").exists()


@pytest.mark.node
def test_quota_change_keeps_the_password(host_domain):
    hosted = host_domain()
    address = mailbox(hosted, "info", quota_mb=50)
    agent_mail.mailbox_quota(address=address, quota_mb=200)
    for _ in range(50):
        imap = imaps(address)
        _, quota = imap.getquotaroot("INBOX")
        imap.logout()
        if quota[1][0].endswith(b" 204800)"):
            break
        time.sleep(0.1)
    assert quota[1][0].endswith(b" 204800)")
    with pytest.raises(AgentError) as missing:
        agent_mail.mailbox_quota(address=f"ghost@{hosted.domain}", quota_mb=10)
    assert missing.value.code == "not_found"


@pytest.mark.node
def test_dkim_key_rotation_signs_with_the_new_key(host_domain, pdns):
    alice_host, bob_host = host_domain(), host_domain()
    alice, bob = mailbox(alice_host, "alice"), mailbox(bob_host, "bob")
    old = alice_host.selector

    publish_dkim(pdns, alice_host, "hw" + uuid.uuid4().hex[:8])
    pdns.delete_rrset(alice_host.domain, name=f"{old}._domainkey.{alice_host.domain}.", rtype="TXT")

    subject = f"rotated {uuid.uuid4().hex[:6]}"
    submit(alice, message(alice, bob, subject))
    raw = wait_for(bob, subject)
    assert f"s={alice_host.selector}" in email.message_from_bytes(raw)["DKIM-Signature"]
    assert dkim.verify(raw, dnsfunc=dkim_dns)
    assert not Path(hwmail.DKIM_DIR, alice_host.domain, f"{old}.private").exists()


@pytest.mark.parametrize(
    "subject, body",
    [("", "text"), ("line\nbreak", "text"), ("ok", ""), ("ok", "x" * 4001), ("ok", "nul\x00")],
)
def test_bad_auto_replies_are_refused(subject, body):
    with pytest.raises(ProvisioningRefused):
        hwmail.autoreply_script_text(subject=subject, body=body)


@pytest.mark.parametrize("selector", ["", "Upper", "a.b", "x;id", "a" * 64, "1abc"])
def test_bad_dkim_selectors_are_refused(selector):
    with pytest.raises(ProvisioningRefused):
        hwmail.validate_selector(selector)


def test_sending_limits_and_accounts_are_checked():
    for hour in (0, -1, 10**7, True):
        with pytest.raises(AgentError):
            agent_mail.domain_ensure(
                domain="example.com", account="acct", account_hour=hour, mailbox_hour=10
            )
    with pytest.raises(AgentError):
        agent_mail.domain_ensure(domain="example.com", account="a b; id")
