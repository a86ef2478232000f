"""Moving an account from one lab node to another: everything arrives, the old node is left
with nothing of it; a move that fails leaves the old node serving, untouched, and the new one
clean."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import smtplib
import socket
import ssl
import time
from typing import Any

import dns.resolver
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings

from provisioning import nodes, services, ssh
from provisioning.models import Node, Operation, OperationEvent, Service, StepRun
from provisioning.resources import services as resources
from tests.factories import CustomerFactory, PlanFactory
from tests.lab.lab import Lab
from tests.node.harness import unique_domain, wait_for_operation

pytestmark = [pytest.mark.lab, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# What an account's name may be found under on a node, by the agent's own inventory.
INVENTORY_KINDS = [
    "user", "home", "pool", "site", "limits", "database", "database_user", "move_package",
]  # fmt: skip


def agent(node: Node, name: str, **args: Any) -> dict[str, Any]:
    result = ssh.call(
        nodes.node_target(node),
        [ssh.action(name, **args)],
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=120,
    )
    [answer] = result.results
    assert answer.ok, answer.error
    return dict(answer.data)


def on_node(lab: Lab, node: Node, command: str) -> str:
    lab_node = next(n for n in lab.nodes if n.name == node.name)
    result = lab.ssh(lab_node, command, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def http_get(address: str, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, 80, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def https_get(address: str, host: str) -> tuple[int, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, 443), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def served_certificate(address: str, host: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, 443), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def self_signed(domain: str) -> tuple[str, str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"www.{domain}")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem,
        cert.public_bytes(serialization.Encoding.DER),
    )


def completed(operation: Operation, timeout: float = 300) -> Operation:
    done = wait_for_operation(operation, timeout=timeout)
    assert done.state == Operation.State.COMPLETED, f"{done.reason} {done.error}"
    return done


def an_account(lab_nodes: list[Node], label: str) -> Service:
    """An account on the first lab node (the others draining while it is placed)."""
    first, *others = lab_nodes
    Node.objects.filter(pk__in=[n.pk for n in others]).update(status=Node.Status.DRAINING)
    service = services.service_order(
        customer=CustomerFactory.create(),
        plan=PlanFactory.create(databases=2, mailboxes=5),
        domain=unique_domain(label),
    )
    Node.objects.filter(pk__in=[n.pk for n in others]).update(status=Node.Status.ACTIVE)
    completed(service.operations.get(kind=Operation.Kind.CREATE))
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    assert service.node_id == first.pk
    return service


def site_content(lab: Lab, service: Service, text: str) -> None:
    user = service.username
    assert service.node is not None
    on_node(
        lab,
        service.node,
        f"cd / && printf '%s' '{text}' | runuser -u {user} -- "  # noqa: S608 (the test's text)
        f"tee /home/{user}/public_html/index.html >/dev/null && "
        f"runuser -u {user} -- mysql -e "
        "'CREATE TABLE moved (id INT PRIMARY KEY, v VARCHAR(40)); "
        f'INSERT INTO moved VALUES (1, "{text}")\'',
    )


def leftovers(node: Node, user: str) -> dict[str, list[str]]:
    found = agent(node, "inventory.list", kinds=INVENTORY_KINDS, account=user)["found"]
    return {kind: names for kind, names in found.items() if names}


def test_an_account_moves_with_its_files_rows_mail_and_certificate(worker, lab, lab_nodes):
    # given an account on the first node with a page, a database row, a mailbox holding a
    # message, and a certificate it serves HTTPS with
    source, target = lab_nodes[0], lab_nodes[1]
    service = an_account(lab_nodes, "moving")
    domain, user = service.domain, service.username
    page = f"moved-{hashlib.sha256(domain.encode()).hexdigest()[:12]}"
    site_content(lab, service, page)
    completed(resources.mailbox_create(service=service, local_part="box", password="Box-pass-1"))
    with smtplib.SMTP(source.address, 25, timeout=30) as smtp:
        smtp.sendmail("sender@example.org", [f"box@{domain}"], f"Subject: {page}\n\nbody\n")
    maildir = f"/var/mail/vhosts/{domain}/box/Maildir"
    for _ in range(100):
        if on_node(lab, source, f"ls {maildir}/new 2>/dev/null | wc -l").strip() == "1":
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the message was not delivered on the old node")
    chain, key, der = self_signed(domain)
    agent(source, "cert.install", domain=domain, fullchain_pem=chain, key_pem=key)
    agent(source, "cert.https_ensure", account=user, domain=domain, listen_ip=None)
    assert served_certificate(source.address, domain) == der
    assert https_get(source.address, domain) == (200, page)

    # when staff move it to the second node
    move = completed(services.service_move(service=service, node=target), timeout=600)

    # then the service, and DNS, point at the new node
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    assert service.node_id == target.pk
    assert service.ip is not None and service.ip.address == target.address
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [target.address]
    assert [r.address for r in resolver.resolve(domain, "A")] == [target.address]
    # and the new node serves the same page, over HTTPS with the same certificate
    assert https_get(target.address, domain) == (200, page)
    assert served_certificate(target.address, domain) == der
    # and the row, the database password and the message are there
    rows = on_node(
        lab,
        target,
        f"cd / && runuser -u {user} -- mysql -N -B -e 'SELECT v FROM moved'",  # noqa: S608
    )
    assert rows.strip() == page
    message = on_node(lab, target, f"cat {maildir}/new/*")
    assert f"Subject: {page}" in message
    # and the old node holds nothing of the account: not its user, home, pool, site, limits,
    # databases or a package; nor its zone, mail or certificate; nginx knows the site no more
    assert leftovers(source, user) == {}
    assert agent(source, "dns.zone_get", domain=domain)["exists"] is False
    assert agent(source, "mail.mailbox.list", domain=domain)["mailboxes"] == []
    assert agent(source, "cert.inventory", domains=[domain])["certificates"] == []
    assert on_node(lab, source, f"test -e /var/mail/vhosts/{domain} || echo gone").strip() == "gone"
    assert http_get(source.address, domain)[0] == 404
    assert leftovers(target, user).keys() >= {"user", "home", "pool", "site", "database"}
    assert "move_package" not in leftovers(target, user)
    # and the downtime is on the operation: a figure on the switch step and an event
    switch = StepRun.objects.get(operation=move, step="move_switch", status="succeeded")
    downtime = switch.resources["downtime_s"]
    assert 0 < downtime < 120
    assert OperationEvent.objects.filter(
        operation=move, detail__startswith="site downtime"
    ).exists()


def test_a_move_that_fails_leaves_the_old_node_serving_and_the_new_one_clean(
    worker, lab, lab_nodes
):
    # given an account with a page and a row on the first node
    source, target = lab_nodes[0], lab_nodes[2]
    service = an_account(lab_nodes, "staying")
    domain, user = service.domain, service.username
    page = f"stays-{hashlib.sha256(domain.encode()).hexdigest()[:12]}"
    site_content(lab, service, page)
    before = leftovers(source, user)

    # when a move fails after the final copy, as the new node is checked (an error injected)
    move = services.service_move(
        service=service, node=target, failpoint={"step": "move_verify", "when": "before"}
    )
    done = wait_for_operation(move, timeout=600)

    # then it rolled back and the service stays on the old node, which serves as before
    assert done.state == Operation.State.ROLLED_BACK, f"{done.reason} {done.error}"
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    assert service.node_id == source.pk
    assert http_get(source.address, domain) == (200, page)
    rows = on_node(
        lab,
        source,
        f"cd / && runuser -u {user} -- mysql -N -B -e 'SELECT v FROM moved'",  # noqa: S608
    )
    assert rows.strip() == page
    assert leftovers(source, user) == before
    assert agent(source, "dns.zone_get", domain=domain)["exists"] is True
    # and the new node holds nothing of it
    assert leftovers(target, user) == {}
    assert agent(target, "dns.zone_get", domain=domain)["exists"] is False
    assert http_get(target.address, domain)[0] == 404
