"""Mail sent by a site, on the real node: PHP's mail() in the account's PHP-FPM pool (requested
through the node's nginx), SMTP from the account's processes to port 25, and what a customer
would try instead (Postfix's sendmail and postdrop, a forged sender, another customer's From:).

The account is made by the engine (a real worker), so its mail domain, hourly limit and DKIM
key in the zone are the ones a customer gets.
"""

from __future__ import annotations

import email
import secrets
import socket
import subprocess
import uuid
from urllib.parse import urlencode

import dkim
import pytest
from hwagent import mail as agent_mail
from hwagent import protocol
from hwagent.registry import load_all

from provisioning import services
from provisioning.models import Operation, Service
from provisioning.resources import mail as hwmail
from provisioning.usage import parse_mail_sending, usage_collect_node
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import TestNode, http_get, unique_domain, wait_for_operation
from tests.resources.test_mail_clients import PASSWORD, dkim_dns, imaps, wait_for

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

MAIL_PHP = """<?php
$headers = 'From: ' . $_GET['from'];
$ok = mail($_GET['to'], $_GET['subject'], "Your order is confirmed.\\n", $headers,
           $_GET['params'] ?? '');
echo $ok ? 'sent' : 'refused';
"""

SMTP_AS_ACCOUNT = """
import smtplib, sys
sender, header_from, to, subject = sys.argv[1:5]
message = f"From: {header_from}\\r\\nTo: {to}\\r\\nSubject: {subject}\\r\\n\\r\\nhello\\r\\n"
try:
    with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
        smtp.sendmail(sender, [to], message)
except smtplib.SMTPResponseException as exc:
    print(exc.smtp_code, exc.smtp_error.decode())
except smtplib.SMTPRecipientsRefused as exc:
    print(*next(iter(exc.recipients.values())))
else:
    print("sent")
"""


def as_account(user: str, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )


# OpenDKIM signs whatever a milter client hands it: only Postfix may be one.
DKIM_SOCKET = "/var/spool/postfix/opendkim/opendkim.sock"
CONNECT_AS_ACCOUNT = """
import errno, socket, sys
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    client.connect(sys.argv[1])
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
else:
    print("connected")
"""


def php_mail(domain: str, **query: str) -> str:
    status, body = http_get(domain, "/mail.php?" + urlencode(query))
    assert status == 200, body
    return body


@pytest.fixture
def other_customer():
    """Another customer's mail domain on the node, with a mailbox that receives."""
    domain = f"o{uuid.uuid4().hex[:10]}.test"
    agent_mail.domain_ensure(domain=domain, account=f"u{uuid.uuid4().hex[:8]}")
    address = f"bob@{domain}"
    agent_mail.mailbox_ensure(
        address=address, password_hash=hwmail.hash_password(PASSWORD), quota_mb=50
    )
    yield address
    agent_mail.domain_remove(domain=domain, purge=True)


def test_a_sites_mail_is_signed_limited_and_sent_only_as_its_own_domains(
    worker, hosting_node, other_customer
):
    # given an account whose plan allows 3 messages an hour, with a PHP page that sends mail
    customer = CustomerFactory.create(name="Sam Site-mail")
    plan = PlanFactory.create(mail_per_hour=3, mail_per_hour_mailbox=2)
    domain = unique_domain("sam-mail")
    service = services.service_order(customer=customer, plan=plan, domain=domain)
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE))
    assert create.state == Operation.State.COMPLETED, create.reason
    user = Service.objects.get(pk=service.pk).username
    subprocess.run(
        ["install", "-o", user, "-g", user, "-m", "0644", "/dev/stdin",
         f"/home/{user}/public_html/mail.php"],
        input=MAIL_PHP, text=True, check=True,
    )  # fmt: skip
    bob = other_customer
    other_domain = bob.split("@")[1]
    shop = f"shop@{domain}"

    # when the site claims another customer's domain in From:, or as the envelope sender
    forged = php_mail(domain, to=bob, subject="forged from", **{"from": f"ceo@{other_domain}"})
    envelope = php_mail(
        domain, to=bob, subject="forged envelope", params=f"-fceo@{other_domain}", **{"from": shop}
    )
    # then mail() fails both times
    assert (forged, envelope) == ("refused", "refused")

    # when the account's processes skip PHP: Postfix's own sendmail and postdrop refuse them
    for command in (["/usr/sbin/sendmail", "-t", "-i"], ["/usr/sbin/postdrop"]):
        done = as_account(user, command, f"From: {shop}\nTo: {bob}\nSubject: direct\n\nhi\n")
        assert done.returncode != 0
        assert f"User {user}(" in done.stderr and "not allowed to submit mail" in done.stderr
    # and SMTP to 127.0.0.1:25 knows the account: a forged sender or From: is refused
    smtp = ["python3", "-c", SMTP_AS_ACCOUNT]
    done = as_account(user, [*smtp, f"ceo@{other_domain}", shop, bob, "smtp forged sender"])
    assert done.stdout.startswith("550 5.7.1 the hosting account"), done
    assert f"the sender <ceo@{other_domain}> is not one" in done.stdout
    done = as_account(user, [*smtp, shop, f"ceo@{other_domain}", bob, "smtp forged from"])
    assert done.stdout.startswith("550 5.7.1 the hosting account"), done
    assert f"the From: address ceo@{other_domain} is not one" in done.stdout

    # when the site sends as its own domain: three messages are within the hour's limit
    subjects = [f"order {n} {uuid.uuid4().hex[:6]}" for n in range(3)]
    for subject in subjects:
        assert php_mail(domain, to=bob, subject=subject, **{"from": f"Shop <{shop}>"}) == "sent"

    # then they arrive, signed with the key the account's zone publishes
    raw = wait_for(bob, subjects[0])
    signature = email.message_from_bytes(raw)["DKIM-Signature"]
    assert signature is not None and f"d={domain}" in signature
    assert dkim.verify(raw, dnsfunc=dkim_dns)
    assert not dkim.verify(raw.replace(b"confirmed", b"cancelled"), dnsfunc=dkim_dns)
    for subject in subjects[1:]:
        wait_for(bob, subject)

    # when a fourth is sent within the hour, by mail() or by the node's sendmail directly
    assert php_mail(domain, to=bob, subject="one too many", **{"from": shop}) == "refused"
    done = as_account(
        user,
        ["/usr/local/lib/hostwright/site-sendmail", "-t", "-i"],
        f"From: {shop}\nTo: {bob}\nSubject: still too many\n\nhi\n",
    )
    # then it is refused with the reason
    assert done.returncode != 0
    assert (
        f"554 5.7.1 Sending limit reached: the hosting account {user} may send 3 messages"
        " per hour and has sent 3" in done.stderr
    ), done.stderr

    # and nothing forged or over the limit reached the other customer
    imap = imaps(bob)
    imap.select("INBOX")
    _, found = imap.search(None, "ALL")
    imap.logout()
    assert len(found[0].split()) == 3

    # and the node's report, as the usage collection reads it, shows the account at its limit
    load_all()
    [report] = protocol.handle(
        {"id": "t", "actions": [{"action": "mail.sending.report", "args": {}}]}, tier="worker"
    )["results"]
    assert report["ok"], report
    sending = parse_mail_sending(report["data"]["accounts"])[user]
    assert (sending.sent_last_hour, sending.refused) == (3, 2)
    usage_collect_node(node_id=hosting_node.pk)
    measured = Service.objects.get(pk=service.pk)
    assert (measured.mail_sent_last_hour, measured.mail_refused_count) == (3, 2)

    wait_for_operation(services.service_terminate(service=measured))


def test_a_customer_cannot_reach_the_dkim_signer(test_node: TestNode):
    # given a Linux user of a hosting account (tagged as the node agent tags them)
    user = f"{test_node.user_prefix}dkim{secrets.token_hex(2)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
         "/usr/sbin/nologin", "--comment", "hostwright service 999999", user],
        check=True,
    )  # fmt: skip
    try:
        # when it connects to OpenDKIM's milter socket, Postfix's way in
        done = as_account(user, ["python3", "-c", CONNECT_AS_ACCOUNT, DKIM_SOCKET])
        # then it is not let in
        assert done.stdout.strip() == "EACCES", done
        # and Postfix is (the socket is there: something else than a missing file refused it)
        assert subprocess.run(["test", "-S", DKIM_SOCKET]).returncode == 0
        done = subprocess.run(
            ["runuser", "-u", "postfix", "--", "python3", "-c", CONNECT_AS_ACCOUNT, DKIM_SOCKET],
            capture_output=True, text=True, cwd="/", timeout=60,
        )  # fmt: skip
        assert done.stdout.strip() == "connected", done
    finally:
        subprocess.run(["userdel", user], check=False)

    # and nothing listens on the TCP port OpenDKIM used to take milter clients on
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 8891), timeout=5).close()
