"""Node resources through the engine: operations run by a real Celery worker on the test node."""

from __future__ import annotations

import imaplib
import os
import smtplib
import subprocess
import time
import uuid
from pathlib import Path

import dns.resolver
import pytest

from provisioning import services as engine
from provisioning.errors import ProvisioningRefused
from provisioning.models import Operation, Service, StepRun
from provisioning.resources import dns as hwdns
from provisioning.resources import mail as hwmail
from provisioning.resources import services
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import wait_for_operation

from .conftest import DNS_PORT

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _service(pk: int) -> Service:
    return Service.objects.select_related("node", "ip", "plan").get(pk=pk)


def _completed(operation: Operation) -> Operation:
    op = wait_for_operation(operation)
    assert op.state == Operation.State.COMPLETED, f"{op.kind}: {op.reason}"
    return op


def _send(to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as smtp:
        smtp.sendmail("sender@example.net", [to], f"Subject: {subject}\r\n\r\nhello\r\n")


def _read(address: str, password: str, subject: str) -> bool:
    for _ in range(100):
        try:
            imap = imaplib.IMAP4("127.0.0.1", 143, timeout=10)
            imap.login(address, password)
        except imaplib.IMAP4.error:
            time.sleep(0.1)  # Dovecot re-reads its passwd-file once a second
            continue
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        imap.logout()
        if found[0]:
            return True
        time.sleep(0.1)
    return False


def _recorded(operation: Operation) -> str:
    runs = StepRun.objects.filter(operation=operation)
    return " ".join(
        f"{c['cmd']} {r.stdout_tail} {r.stderr_tail} {r.resources}"
        for r in runs
        for c in r.commands
    )


@pytest.fixture
def account(worker, hosting_node):
    """An active hosting account created through the engine, terminated afterwards."""
    customer = CustomerFactory.create(name="Rita Resources")
    plan = PlanFactory.create(databases=2, mailboxes=1)
    domain = f"r{uuid.uuid4().hex[:8]}.example"
    service = engine.service_order(customer=customer, plan=plan, domain=domain)
    create = _completed(service.operations.get(kind=Operation.Kind.CREATE))
    yield _service(service.pk), create
    service = _service(service.pk)
    if service.state != Service.State.TERMINATED:
        wait_for_operation(engine.service_terminate(service=service))


def test_create_serves_the_zone_and_accepts_mail_and_terminate_removes_both(account):
    service, create = account
    domain = service.domain

    # then the zone answers from the node's nameserver, pointing at the account's IP
    check = hwdns.verify_zone(domain, nameserver="127.0.0.1", port=DNS_PORT)
    assert check.ok, check.problems
    assert check.answers[f"www.{domain}. A"] == [service.ip.address]
    assert check.answers[f"{domain}. MX"] == [f"10 mail.{domain}."]
    # and the verification step stored what the nameserver answered
    verify = StepRun.objects.get(operation=create, step="verify_dns", direction="apply")
    assert verify.resources["dns_check"]["ok"] is True
    assert verify.resources["dns_check"]["answers"][f"{domain}. A"] == [service.ip.address]
    # and the DNS API key never appears in what was recorded
    key = Path("/etc/hostwright/pdns-api-key").read_text().strip()
    assert key not in _recorded(create)
    # and the node accepts mail for the domain (a mailbox can be created there)
    assert f"{domain} OK" in Path(f"{hwmail.MAIL_ETC}/domains").read_text()

    # when the account is terminated
    terminate = _completed(engine.service_terminate(service=service))

    # then the zone and the mail domain are gone
    assert terminate.state == Operation.State.COMPLETED
    gone = hwdns.verify_zone(domain, nameserver="127.0.0.1", port=DNS_PORT)
    assert any("REFUSED" in p for p in gone.problems)
    assert f"{domain} OK" not in Path(f"{hwmail.MAIL_ETC}/domains").read_text()


def test_mailbox_and_forwarder_through_the_engine(account):
    service, _ = account
    domain = service.domain

    # when the customer creates a mailbox and a forwarder to it
    password = "mailbox-pass-123"
    op = _completed(
        services.mailbox_create(service=service, local_part="info", password=password, quota_mb=5)
    )
    _completed(
        services.forwarder_set(
            service=service, source=f"sales@{domain}", targets=[f"info@{domain}"]
        )
    )

    # then mail to both addresses can be read over IMAP
    _send(f"info@{domain}", "direct")
    _send(f"sales@{domain}", "forwarded")
    assert _read(f"info@{domain}", password, "direct")
    assert _read(f"info@{domain}", password, "forwarded")
    # and the password is neither in the operation's params nor in its records
    stored = Operation.objects.get(pk=op.pk)
    assert password not in str(stored.params) and password not in _recorded(stored)
    assert stored.params["password_hash"] not in _recorded(stored)

    # when a second mailbox would pass the plan's limit of one
    second = wait_for_operation(
        services.mailbox_create(service=service, local_part="other", password=password)
    )

    # then it is refused with a message naming the limit, and nothing was created
    assert second.state in (Operation.State.FAILED, Operation.State.ROLLED_BACK)
    assert "Your plan allows 1 mailboxes" in second.reason
    assert f"other@{domain}" not in Path(f"{hwmail.MAIL_ETC}/mailboxes").read_text()


def test_database_through_the_engine_with_the_plan_limit(account):
    service, _ = account
    user = service.username

    # when the customer creates a database with its own user
    password = "db-pass-123456"
    op = _completed(
        services.database_create(service=service, name="shop", user="shop", password=password)
    )

    # then the credentials work on the node
    result = subprocess.run(
        ["mariadb", "-u", f"{user}_shop", "-N", "-B", "-e", "SELECT DATABASE()", f"{user}_shop"],
        env={**os.environ, "MYSQL_PWD": password},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == f"{user}_shop", result.stderr
    assert password not in _recorded(Operation.objects.get(pk=op.pk))

    # when a third database would pass the plan's limit (the account's main one counts)
    third = wait_for_operation(
        services.database_create(service=service, name="blog", user="blog", password=password)
    )

    # then it is refused naming the limit
    assert third.state in (Operation.State.FAILED, Operation.State.ROLLED_BACK)
    assert "Your plan allows 2 databases" in third.reason

    # and deleting the database removes it
    _completed(services.database_delete(service=service, name="shop", user="shop"))
    again = subprocess.run(
        ["mariadb", "-u", f"{user}_shop", "-e", "SELECT 1"],
        env={**os.environ, "MYSQL_PWD": password},
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0


def test_failed_mailbox_operation_is_undone(account):
    service, _ = account
    domain = service.domain

    # given a mailbox operation made to fail after its mailbox was written
    op = engine.operation_start(
        service=service,
        kind="mailbox_create",
        params={
            "address": f"temp@{domain}",
            "password_hash": hwmail.hash_password("temporary-123"),
            "quota_mb": 5,
            "failpoint": {"step": "mailbox", "when": "after"},
        },
    )

    # when it runs, then it is rolled back and the mailbox is gone from the node
    op = wait_for_operation(op)
    assert op.state == Operation.State.ROLLED_BACK, op.reason
    assert f"temp@{domain}" not in Path(f"{hwmail.MAIL_ETC}/mailboxes").read_text()
    assert f"temp@{domain}:" not in Path(f"{hwmail.MAIL_ETC}/passwd").read_text()


def test_dns_records_change_and_its_undo(account):
    service, _ = account
    domain = service.domain

    # when the customer points www elsewhere and adds a TXT record
    _completed(
        services.dns_records_change(
            service=service,
            replace=[
                {"name": "www", "type": "A", "contents": ["192.0.2.44"], "ttl": 300},
                {"name": "_verify", "type": "TXT", "contents": ["token=abc"], "ttl": 300},
            ],
        )
    )

    # then the nameserver answers the new data
    _, data, _ = hwdns.query(f"www.{domain}", "A", nameserver="127.0.0.1", port=DNS_PORT)
    assert data == ["192.0.2.44"]

    # given a change made to fail after it was applied
    op = engine.operation_start(
        service=service,
        kind="dns_records",
        params={
            "replace": [
                {"name": f"www.{domain}.", "type": "A", "ttl": 300, "contents": ["192.0.2.99"]},
                {"name": f"new.{domain}.", "type": "A", "ttl": 300, "contents": ["192.0.2.98"]},
            ],
            "delete": [[f"_verify.{domain}.", "TXT"]],
            "failpoint": {"step": "dns_records", "when": "after"},
        },
    )

    # then the rollback puts back exactly what was there before
    op = wait_for_operation(op)
    assert op.state == Operation.State.ROLLED_BACK, op.reason

    def answer(name: str, rtype: str) -> list[str]:
        return hwdns.query(f"{name}.{domain}", rtype, nameserver="127.0.0.1", port=DNS_PORT)[1]

    assert answer("www", "A") == ["192.0.2.44"]
    assert answer("new", "A") == []
    assert answer("_verify", "TXT") == ['"token=abc"']


def test_bad_input_is_refused_before_any_operation(account):
    service, _ = account
    before = Operation.objects.filter(service=service).count()
    bad_calls = [
        lambda: services.database_create(
            service=service, name="x;drop", user="u", password="p" * 12
        ),
        lambda: services.mailbox_create(service=service, local_part="../etc", password="p" * 12),
        lambda: services.mailbox_create(service=service, local_part="ok", password="short"),
        lambda: services.forwarder_set(
            service=service, source="a@elsewhere.example", targets=["b@example.net"]
        ),
        lambda: services.dns_records_change(
            service=service, replace=[{"name": "www", "type": "A", "contents": ["1.2.3"]}]
        ),
        lambda: services.dns_records_change(
            service=service, replace=[{"name": "@", "type": "CNAME", "contents": ["x.net."]}]
        ),
    ]
    for call in bad_calls:
        with pytest.raises(ProvisioningRefused):
            call()
    assert Operation.objects.filter(service=service).count() == before


PEBBLE = "https://127.0.0.1:14000/dir"
PEBBLE_CERT = "/etc/hostwright/pebble/cert.pem"


def _served_certificate_names(host: str, port: int = 443) -> list[str]:
    """The names in the certificate served for ``host`` on 127.0.0.1 (nginx's 443 by default)."""
    import socket
    import ssl

    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Pebble's roots change on every start
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(san.value.get_values_for_type(x509.DNSName))


def _http_status(host: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    return response.status, response.getheader("Location") or ""


def test_certificate_is_issued_from_pebble_and_served_over_https(account):
    service, _ = account
    domain = service.domain

    # when the customer asks for a certificate (the zone we provisioned points here)
    op = _completed(
        services.certificate_issue(service=service, directory_url=PEBBLE, ca_bundle=PEBBLE_CERT)
    )

    # then nginx serves it for the domain and www over HTTPS and redirects plain HTTP
    assert _served_certificate_names(domain) == sorted([domain, f"www.{domain}"])
    assert _http_status(domain) == (301, f"https://{domain}/")
    # and the private key is in no record
    key = Path(f"/etc/hostwright/certs/{domain}/privkey.pem").read_text()
    assert key.strip() not in _recorded(Operation.objects.get(pk=op.pk))
    step = StepRun.objects.get(operation=op, step="certificate", direction="apply")
    assert step.resources["names"] == [domain, f"www.{domain}"]
    # and mail clients asking for the domain by name get the same certificate (SNI) on
    # IMAPS, POP3S and SMTPS; others still get the node's own
    for port in (993, 995, 465):
        for _ in range(50):  # Dovecot's reload finishes after the step
            if _served_certificate_names(domain, port) == sorted([domain, f"www.{domain}"]):
                break
            time.sleep(0.1)
        assert _served_certificate_names(domain, port) == sorted([domain, f"www.{domain}"])
    assert domain not in _served_certificate_names("other.example", 993)


def test_certificate_for_a_domain_that_does_not_point_here_fails_before_the_ca(account):
    service, _ = account
    domain = service.domain
    # given www pointing somewhere else
    _completed(
        services.dns_records_change(
            service=service,
            replace=[{"name": "www", "type": "A", "contents": ["192.0.2.9"], "ttl": 60}],
        )
    )

    # when a certificate is requested
    op = wait_for_operation(
        services.certificate_issue(service=service, directory_url=PEBBLE, ca_bundle=PEBBLE_CERT)
    )

    # then it fails with the reason, after the precheck only: the CA was never asked
    assert op.state in (Operation.State.FAILED, Operation.State.ROLLED_BACK)
    assert "does not point here" in op.reason and f"www.{domain} (192.0.2.9)" in op.reason
    steps = set(StepRun.objects.filter(operation=op).values_list("step", flat=True))
    assert steps == {"certificate_precheck"}
    assert _http_status(domain)[0] != 301  # still plain HTTP


def test_wordpress_one_click_install_serves_the_wordpress_page(account):
    service, _ = account

    # when the customer installs WordPress into the site
    op, admin_password = services.wordpress_install(
        service=service, title="Rita Writes", admin_user="rita", admin_email="rita@example.com"
    )
    op = _completed(op)

    # then the site answers with the WordPress front page through nginx and PHP-FPM
    from tests.node.harness import http_get

    status, body = http_get(service.domain)
    assert status == 200, body[:500]
    assert "Rita Writes" in body and 'content="WordPress' in body
    # and the admin password shown once is in no record and not in the operation's params
    stored = Operation.objects.get(pk=op.pk)
    assert admin_password not in str(stored.params) and admin_password not in _recorded(stored)


def test_backup_and_restore_through_the_engine(account):
    service, _ = account
    user = service.username
    page = Path(f"/home/{user}/public_html/index.html")
    original = page.read_text()

    # given a backup, which reports each component and verifies
    backup = _completed(services.backup_create(service=service, keep=3))
    run = StepRun.objects.get(operation=backup, step="backup", direction="apply")
    components = {r["component"]: r["ok"] for r in run.resources["report"]}
    assert components == {"files": True, f"db:{user}_main": True}
    assert run.resources["verified"] is True

    # when the site is damaged and the backup restored
    page.write_text("defaced\n")
    _completed(services.backup_restore(service=service, backup_id=backup.params["backup_id"]))

    # then the page is back
    assert page.read_text() == original


def test_sftp_upload_is_served_by_the_site_and_the_chroot_holds(account):
    import paramiko

    from tests.node.harness import http_get
    from tests.resources.conftest import run_part

    run_part("85-sftp.sh")
    service, _ = account
    user = service.username

    # when SFTP is allowed with a password
    _completed(services.sftp_enable(service=service, password="sftp-password-123"))

    # then the customer logs in with paramiko, is jailed in the account's home (which is "/",
    # so no other account's name shows) and uploads a page
    transport = paramiko.Transport(("127.0.0.1", 2022))
    transport.connect(username=user, password="sftp-password-123")
    client = paramiko.SFTPClient.from_transport(transport)
    assert client is not None
    assert client.normalize(".") == "/"
    assert "public_html" in client.listdir("/") and user not in client.listdir("/")
    with client.open("public_html/hello.txt", "w") as remote:
        remote.write("uploaded over sftp\n")
    # and the chroot holds: the system's files are not there
    with pytest.raises(IOError):
        client.stat("/etc/passwd")
    client.close()
    transport.close()

    # and the site serves the uploaded file
    assert http_get(service.domain, "/hello.txt") == (200, "uploaded over sftp\n")
    owner = Path(f"/home/{user}/public_html/hello.txt").owner()
    assert owner == user

    # when SFTP is turned off, then the login is refused
    _completed(services.sftp_disable(service=service))
    refused = paramiko.Transport(("127.0.0.1", 2022))
    with pytest.raises(paramiko.AuthenticationException):
        refused.connect(username=user, password="sftp-password-123")
    refused.close()


def test_mail_settings_through_the_engine(account):
    """DKIM, DMARC, SPF and limits from create; quota, catch-all, auto-reply, key rotation."""
    service, create = account
    domain = service.domain
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], DNS_PORT

    def txt(name: str) -> list[str]:
        return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]

    # then create published a DKIM key the node signs with, SPF for the node and DMARC
    selector = StepRun.objects.get(operation=create, step="dkim_key").resources["dkim_selector"]
    [dkim_txt] = txt(f"{selector}._domainkey.{domain}")
    assert dkim_txt.startswith("v=DKIM1; k=rsa; p=")
    assert f"{selector}._domainkey.{domain}" in Path(hwmail.DKIM_DIR, "signingtable").read_text()
    assert "v=spf1 mx ip4:127.0.0.1 -all" in txt(domain)
    assert txt(f"_dmarc.{domain}") == [
        f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}; adkim=r; aspf=r"
    ]
    # and the plan's hourly limits are on the node for the account
    limits = Path(hwmail.MAIL_ETC, "limits").read_text().splitlines()
    assert f"{domain} {service.username} {service.plan.mail_per_hour} 100" in limits

    # when the customer sets a quota, a catch-all, an auto-reply, a DMARC policy, a new key
    address = f"info@{domain}"
    _completed(services.mailbox_create(service=service, local_part="info", password="pw-123456789"))
    _completed(services.mailbox_quota_change(service=service, address=address, quota_mb=77))
    _completed(services.catchall_set(service=service, target=address))
    _completed(
        services.autoreply_set(service=service, address=address, subject="Away", body="Back soon")
    )
    _completed(services.dmarc_set(service=service, policy="quarantine"))
    rotate = _completed(services.dkim_rotate(service=service))

    # then the node has them all
    assert f"{address}:" in Path(hwmail.MAIL_ETC, "passwd").read_text()
    assert "storage=77M" in next(
        line
        for line in Path(hwmail.MAIL_ETC, "passwd").read_text().splitlines()
        if line.startswith(f"{address}:")
    )
    assert f"@{domain} {address}" in Path(hwmail.MAIL_ETC, "catchall").read_text()
    sieve = Path(hwmail.VHOSTS, domain, "info", ".dovecot.sieve").read_text()
    assert 'vacation :days 1 :subject "Away" "Back soon";' in sieve
    assert txt(f"_dmarc.{domain}")[0].startswith("v=DMARC1; p=quarantine;")
    new = StepRun.objects.get(operation=rotate, step="dkim_key").resources["dkim_selector"]
    assert new != selector
    assert f"{new}._domainkey.{domain}" in Path(hwmail.DKIM_DIR, "signingtable").read_text()
    assert txt(f"{new}._domainkey.{domain}")[0].startswith("v=DKIM1;")
    assert txt(f"{selector}._domainkey.{domain}")  # kept while mail signed with it travels

    # and a second rotation retires the first key's record
    _completed(services.dkim_rotate(service=service))
    with pytest.raises(dns.resolver.NXDOMAIN):
        txt(f"{selector}._domainkey.{domain}")

    # and turning the auto-reply and the catch-all off removes them
    _completed(services.autoreply_set(service=service, address=address, enabled=False))
    _completed(services.catchall_set(service=service, target=None))
    assert not Path(hwmail.VHOSTS, domain, "info", ".dovecot.sieve").exists()
    assert f"@{domain} " not in Path(hwmail.MAIL_ETC, "catchall").read_text()

    # and what the customer may not do is refused before any operation
    for bad in (
        lambda: services.autoreply_set(service=service, address="x@elsewhere.example", body="x"),
        lambda: services.mailbox_quota_change(service=service, address=address, quota_mb=0),
        lambda: services.dmarc_set(service=service, policy="none; rua=mailto:x@evil.example"),
        lambda: services.catchall_set(service=service, target="not an address"),
    ):
        with pytest.raises(ProvisioningRefused):
            bad()
