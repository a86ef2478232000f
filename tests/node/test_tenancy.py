"""Two customers and one domain, on the real node: a domain has one live owner, a former
owner's token reaches nothing of the new owner's, terminating a failed service touches no zone
or mail domain another service holds, and terminate leaves nothing of the account behind.

What is on the node is asked from the node agent over SSH (as the workers ask it), and read
from PowerDNS and the maildirs where no agent action lists it.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client

from accounts.models import Membership
from api.services import api_token_create
from provisioning import nodes, services, ssh
from provisioning.models import Node, NodeResource, Operation, Service
from provisioning.resources import services as resources
from provisioning.ssh import action
from tests.factories import CustomerFactory, MembershipFactory, PlanFactory, UserFactory
from tests.node.harness import unique_domain, wait_for_operation

pytestmark = [pytest.mark.node, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

MAIL_ETC = Path("/etc/hostwright/mail")
VHOSTS = Path("/var/mail/vhosts")
PEBBLE = "https://127.0.0.1:14000/dir"
PEBBLE_CERT = "/etc/hostwright/pebble/cert.pem"


def agent(node: Node, *actions: ssh.AgentAction) -> list[dict[str, Any]]:
    """Ask the node agent, over SSH with the workers' key; each action's data."""
    result = ssh.call(
        nodes.node_target(node),
        list(actions),
        key_path=settings.PROVISIONING_SSH_KEY,
        timeout=60,
    )
    assert result.ok, [r.error for r in result.results]
    return [r.data for r in result.results]


def completed(operation: Operation) -> Operation:
    op = wait_for_operation(operation)
    assert op.state == Operation.State.COMPLETED, f"{op.kind}: {op.reason} / {op.error}"
    return op


def fresh(service: Service) -> Service:
    return Service.objects.select_related("node", "ip", "plan", "customer").get(pk=service.pk)


def order(domain: str, *, failpoint: dict[str, str] | None = None, **plan: Any) -> Service:
    customer = CustomerFactory.create()
    with transaction.atomic():
        service = services.service_order(
            customer=customer,
            plan=PlanFactory.create(databases=3, mailboxes=3, **plan),
            domain=domain,
        )
        if failpoint:
            Operation.objects.filter(service=service).update(params={"failpoint": failpoint})
    return service


def live(domain: str, **plan: Any) -> Service:
    service = order(domain, **plan)
    completed(service.operations.get(kind=Operation.Kind.CREATE))
    return fresh(service)


def terminate(service: Service) -> Operation:
    return completed(services.service_terminate(service=fresh(service)))


def address_of(service: Service) -> str:
    assert service.ip is not None
    return str(service.ip.address)


def zone(node: Node, domain: str) -> dict[tuple[str, str], list[str]]:
    [got] = agent(node, action("dns.zone_get", domain=domain))
    assert got["exists"], f"the zone {domain} is not on the node"
    return {(r["name"], r["type"]): list(r["contents"]) for r in got["rrsets"]}


def mail_domains() -> list[str]:
    path = MAIL_ETC / "domains"
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def deliver(address: str, subject: str) -> Path:
    """Send a message to a mailbox on the node and wait until it is stored; its file."""
    for attempt in range(3):  # a loaded node's Postfix may time a connection out
        try:
            with smtplib.SMTP("127.0.0.1", 25, timeout=60) as smtp:
                message = f"Subject: {subject}\r\n\r\nhello\r\n"
                smtp.sendmail("sender@example.net", [address], message)
            break
        except (smtplib.SMTPServerDisconnected, TimeoutError):
            if attempt == 2:
                raise
    local, domain = address.split("@")
    maildir = VHOSTS / domain / local
    for _ in range(300):
        for path in maildir.glob("**/new/*"):
            if subject in path.read_text(errors="replace"):
                return path
        time.sleep(0.2)
    raise AssertionError(f"no message {subject!r} was stored in {maildir}")


@pytest.fixture
def cleanup(worker, hosting_node):
    """Terminate, at the end, every service a test left live or failed (a failing test
    leaves nothing on the shared node either)."""
    yield
    for service in Service.objects.exclude(state=Service.State.TERMINATED):
        running = service.operations.filter(state__in=Operation.RUNNING_STATES).first()
        if running is not None:
            wait_for_operation(running)
        service = fresh(service)
        if service.state != Service.State.TERMINATED:
            wait_for_operation(services.service_terminate(service=service))


def api_post(client: Client, token: str, path: str, body: object) -> Any:
    return client.post(
        path, body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def test_a_former_owner_token_reaches_nothing_of_the_domain_s_new_owner(cleanup, hosting_node):
    # given customer A, who hosted the domain and has a writing API token
    domain = unique_domain("reused")
    a_service = live(domain)
    a_user = UserFactory.create(email=f"a-{a_service.pk}@example.com")
    MembershipFactory.create(customer=a_service.customer, user=a_user, role=Membership.Role.OWNER)
    token = api_token_create(
        customer=a_service.customer, user=a_user, name="script", scope="write"
    ).secret
    # and whose service was terminated
    terminate(a_service)
    # when customer B buys the same domain and it is provisioned
    b_service = live(domain)
    b_ops = set(Operation.objects.filter(service=b_service).values_list("pk", flat=True))
    assert b_service.username != a_service.username

    # then A's token can create no DNS records, databases or mailboxes: not on A's
    # terminated service (refused by its state), not on B's (not A's customer's: not found)
    client = Client()
    attempts = {
        "dns-records": {
            "replace": [
                {"name": "@", "type": "A", "contents": ["192.0.2.66"]},
                {"name": "takeover", "type": "TXT", "contents": ['"owned by A"']},
            ]
        },
        "databases": {"name": "loot", "user": "loot", "password": "p" * 20},
        "mailboxes": {"local_part": "ceo", "password": "p" * 20},
    }
    for what, body in attempts.items():
        own = api_post(client, token, f"/api/v1/services/{a_service.pk}/{what}/", body)
        assert own.status_code == 409, (what, own.content)
        assert "terminated" in own.json()["error"]["message"]
        other = api_post(client, token, f"/api/v1/services/{b_service.pk}/{what}/", body)
        assert other.status_code == 404, (what, other.content)
    assert (
        not Operation.objects.filter(service=a_service)
        .exclude(kind__in=["create", "terminate"])
        .exists()
    )
    assert set(Operation.objects.filter(service=b_service).values_list("pk", flat=True)) == b_ops

    # and on the node, B's zone has no record and no TXT of A's, and no mailbox or
    # database of A's was made in B's mail domain or B's account
    rrsets = zone(hosting_node, domain)
    assert rrsets[(f"{domain}.", "A")] == [address_of(b_service)]
    assert (f"takeover.{domain}.", "TXT") not in rrsets
    assert not any("owned by A" in c for cs in rrsets.values() for c in cs)
    boxes, dbs = agent(
        hosting_node,
        action("mail.mailbox.list", domain=domain),
        action("db.inventory", account=b_service.username),
    )
    assert boxes["mailboxes"] == []
    assert not any("loot" in d for d in dbs["databases"])
    # and the zone and mail domain are B's, on the panel's side too
    held = NodeResource.objects.filter(name=domain, state__in=NodeResource.LIVE_STATES)
    assert {(r.kind, r.service_id) for r in held} == {
        ("zone", b_service.pk),
        ("mail_domain", b_service.pk),
    }
    terminate(b_service)


def test_terminating_a_failed_service_leaves_the_live_owner_s_domain_alone(cleanup, hosting_node):
    # given customer B's order for a domain, which failed after its zone and mail domain were
    # made (rolled back, so the service is failed)
    domain = unique_domain("contested")
    b_service = order(domain, failpoint={"step": "dkim_key", "when": "after"})
    b_create = wait_for_operation(b_service.operations.get(kind="create"))
    assert b_create.state == Operation.State.ROLLED_BACK, b_create.reason
    b_service = fresh(b_service)
    assert b_service.state == Service.State.FAILED
    # (as if its undo had not finished: B's rows still claim the zone and the mail domain)
    for kind in (NodeResource.Kind.ZONE, NodeResource.Kind.MAIL_DOMAIN):
        NodeResource.objects.create(
            service=b_service, node=hosting_node, kind=kind, name=domain, operation=b_create
        )

    # and customer A, who then bought the same domain, with a mailbox holding mail
    a_service = live(domain)
    password = "mailbox-pass-123"
    completed(
        resources.mailbox_create(
            service=a_service, local_part="info", password=password, quota_mb=5
        )
    )
    stored = deliver(f"info@{domain}", "kept-for-a")
    # (A took the names over: B's claims were let go of, A's rows hold them now)
    claims = NodeResource.objects.filter(service=b_service, name=domain)
    assert {r.state for r in claims} == {NodeResource.State.GONE}

    # when B's failed service is terminated
    terminate(b_service)

    # then A's zone, mail domain, mailbox and stored mail are all still on the node
    rrsets = zone(hosting_node, domain)
    assert rrsets[(f"{domain}.", "A")] == [address_of(a_service)]
    assert domain in mail_domains()
    [boxes] = agent(hosting_node, action("mail.mailbox.list", domain=domain))
    assert boxes["mailboxes"] == [f"info@{domain}"]
    assert stored.exists()
    # and A's account itself is untouched
    [found] = agent(hosting_node, action("inventory.list", account=a_service.username))
    for what in ("user", "pool", "site"):
        assert found["found"][what] == [a_service.username], what
    # and B's own account (another Linux user) is gone
    [b_found] = agent(hosting_node, action("inventory.list", account=b_service.username))
    assert all(names == [] for names in b_found["found"].values()), b_found
    terminate(a_service)
    assert domain not in mail_domains()
    assert not (VHOSTS / domain).exists()


def test_after_terminate_nothing_of_the_account_is_on_the_node(cleanup, hosting_node):
    # given an account with everything a customer can make: databases and their users (its
    # own, a second one, WordPress's), mailboxes with mail, a DNS record, SFTP access, a
    # certificate with HTTPS, and backups
    domain = unique_domain("everything")
    service = live(domain)
    user = service.username
    completed(
        resources.database_create(
            service=service, name="shop", user="shop", password="db-password-12345"
        )
    )
    op, _ = resources.wordpress_install(
        service=service, title="All of it", admin_user="owner", admin_email="o@example.com"
    )
    completed(op)
    completed(
        resources.mailbox_create(
            service=service, local_part="info", password="mailbox-pass-123", quota_mb=5
        )
    )
    deliver(f"info@{domain}", "before-terminate")
    completed(
        resources.dns_records_change(
            service=service, replace=[{"name": "shop", "type": "A", "contents": ["192.0.2.7"]}]
        )
    )
    completed(resources.sftp_enable(service=service, password="sftp-password-123"))
    completed(
        resources.certificate_issue(service=service, directory_url=PEBBLE, ca_bundle=PEBBLE_CERT)
    )
    completed(resources.backup_create(service=service, keep=3))
    # (the panel's rows list all of it)
    kinds = set(
        NodeResource.objects.filter(service=service, state="present").values_list("kind", flat=True)
    )
    assert kinds == {
        "linux_user", "limits", "pool", "site", "database", "database_user", "zone",
        "record_set", "mail_domain", "mailbox", "sftp", "certificate", "https", "backup",
    }  # fmt: skip
    databases = set(
        NodeResource.objects.filter(service=service, kind="database").values_list("name", flat=True)
    )
    assert databases == {f"{user}_main", f"{user}_shop", f"{user}_wp"}

    # when the account is terminated
    terminate(service)

    # then an inventory through the node agent finds nothing of it, kind by kind
    found, dbs, zones, boxes, certs, backups = agent(
        hosting_node,
        action("inventory.list", account=user),
        action("db.inventory", account=user),
        action("dns.inventory", domains=[domain]),
        action("mail.mailbox.list", domain=domain),
        action("cert.inventory", domains=[domain]),
        action("backup.list", account=user),
    )
    for kind, names in found["found"].items():
        assert names == [], f"{kind}: {names}"
    assert dbs["databases"] == [] and dbs["users"] == {}
    assert zones["zones"] == []
    assert boxes["mailboxes"] == []
    assert certs["certificates"] == []
    assert backups["backups"] == []
    # and neither the mail domain, its stored mail, the SFTP keys nor the HTTPS file remain
    assert domain not in mail_domains()
    assert not (VHOSTS / domain).exists()
    assert not Path(f"/etc/hostwright/sftp/keys/{user}").exists()
    assert not Path(f"/etc/nginx/hostwright/tls/{user}.conf").exists()
    assert not Path(f"/var/backups/hostwright/{user}").exists()
    # and the panel's rows say so: the service holds nothing any more
    assert not NodeResource.objects.filter(
        service=service, state__in=NodeResource.LIVE_STATES
    ).exists()
