"""Certificates from the node's Pebble over HTTP-01 through nginx, names resolved by PowerDNS."""

from __future__ import annotations

import datetime as dt
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID
from hwagent import certs as agent_certs
from hwagent import dns as agent_dns
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import acme as hwacme

from .conftest import DNS_PORT, run_part

PEBBLE = "https://127.0.0.1:14000/dir"
PEBBLE_CERT = "/etc/hostwright/pebble/cert.pem"
NS = ["ns1.hostwright.test"]


class AgentWebroot:
    """Challenge answers published by the node agent's own code in root's ACME webroot (what
    the worker's ``cert.challenge_put`` requests do on a node)."""

    def put(self, token: str, key_authorization: str) -> None:
        agent_certs.challenge_put(token=token, key_authorization=key_authorization)

    def remove(self, token: str) -> None:
        agent_certs.challenge_remove(token=token)


class NowhereWebroot:
    """Challenge answers that no site serves (the CA's validation must fail)."""

    def put(self, token: str, key_authorization: str) -> None:
        pass

    def remove(self, token: str) -> None:
        pass


def zone(name: str) -> None:
    agent_dns.zone_ensure(domain=name, ipv4="127.0.0.1", nameservers=NS)


def nginx(*args: str) -> None:
    subprocess.run(["nginx", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def acme_node(powerdns_node):
    """PowerDNS, Pebble and nginx on the node (nginx's own part when the engine provides it)."""
    run_part("70-acme.sh")
    run_part("30-nginx.sh")
    return powerdns_node


@pytest.fixture
def site(acme_node, zone_name):
    """A zone pointing at 127.0.0.1 and an nginx server block that serves its ACME webroot,
    as a site's own server block does."""
    zone(zone_name)
    sites = Path("/etc/nginx/hostwright/sites")  # where the node's nginx part keeps sites
    if not sites.is_dir():
        sites = Path("/etc/nginx/sites-enabled")
    conf = sites / f"hwtest-{zone_name}.conf"
    conf.write_text(
        "server {\n  listen 80;\n"
        f"  server_name {zone_name} www.{zone_name};\n"
        "  include snippets/hostwright-acme.conf;\n  location / { return 404; }\n}\n"
    )
    nginx("-t", "-q")
    nginx("-s", "reload")
    # The reload is finished when the new server block answers a challenge file.
    webroot = AgentWebroot()
    probe = "probe" + zone_name.replace(".", "").replace("-", "")[:20]
    ready = f"{probe}.{'r' * 20}"
    webroot.put(probe, ready)
    for _ in range(100):
        request = urllib.request.Request(
            f"http://127.0.0.1/.well-known/acme-challenge/{probe}", headers={"Host": zone_name}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310
                if resp.read() == ready.encode():
                    break
        except OSError:
            pass
        subprocess.run(["sleep", "0.1"], check=True)
    webroot.remove(probe)
    yield zone_name
    conf.unlink(missing_ok=True)
    nginx("-s", "reload")


@pytest.mark.node
def test_certificate_is_issued_for_a_zone_that_points_here(site):
    # given a zone whose apex and www point at the node, and a new ACME account
    names = [site, f"www.{site}"]
    account_key = hwacme.new_account_key_pem()

    # when a certificate is obtained from Pebble over HTTP-01 through nginx
    cert = hwacme.obtain_certificate(
        names=names,
        node_ip="127.0.0.1",
        nameserver="127.0.0.1",
        nameserver_port=DNS_PORT,
        directory_url=PEBBLE,
        account_key_pem=account_key,
        challenge_files=AgentWebroot(),
        verify=PEBBLE_CERT,
    )

    # then it covers both names, is valid for weeks, and matches its private key
    found, not_after = hwacme.certificate_info(cert.fullchain_pem)
    assert found == sorted(names)
    assert not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    leaf = x509.load_pem_x509_certificates(cert.fullchain_pem.encode())[0]
    key = load_pem_private_key(cert.key_pem.encode(), None)
    spki = PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(Encoding.PEM, spki) == key.public_key().public_bytes(
        Encoding.PEM, spki
    )
    # and no challenge file is left behind in the webroot
    assert list(Path(agent_certs.CHALLENGE_DIR).iterdir()) == []


@pytest.mark.node
def test_same_account_key_issues_again(site):
    # given an account that already exists at the CA
    account_key = hwacme.new_account_key_pem()

    def order():
        return hwacme.issue_certificate(
            names=[site],
            directory_url=PEBBLE,
            account_key_pem=account_key,
            challenge_files=AgentWebroot(),
            verify=PEBBLE_CERT,
        )

    first = order()

    # when the same key orders again (a renewal)
    second = order()

    # then the same account is used and a new certificate comes back
    assert second.account_uri == first.account_uri
    assert second.fullchain_pem != first.fullchain_pem


@pytest.mark.node
def test_domain_that_does_not_point_here_fails_before_the_ca(acme_node, zone_name):
    # given a zone whose www points somewhere else
    zone(zone_name)
    agent_dns.records(
        domain=zone_name,
        replace=[{"name": "www", "type": "A", "ttl": 60, "contents": ["192.0.2.9"]}],
        delete=[],
    )

    # when a certificate is requested with a CA address nothing listens on
    with pytest.raises(hwacme.CertificateError) as info:
        hwacme.obtain_certificate(
            names=[zone_name, f"www.{zone_name}"],
            node_ip="127.0.0.1",
            nameserver="127.0.0.1",
            nameserver_port=DNS_PORT,
            directory_url="https://127.0.0.1:9/dir",
            account_key_pem=hwacme.new_account_key_pem(),
            challenge_files=AgentWebroot(),
            verify=PEBBLE_CERT,
        )

    # then the reason names the domain and says it does not point here, and it is not retried
    # (the CA address was never used: that would have been a network error instead)
    assert info.value.code == "not_pointing"
    assert info.value.permanent is True
    assert f"www.{zone_name} (192.0.2.9)" in str(info.value)
    assert "does not point here" in str(info.value)


@pytest.mark.node
def test_validation_failure_at_the_ca_is_permanent_with_a_reason(acme_node, zone_name):
    # given a zone that points here but no site serves its challenge files
    # (Debian's default server answers 404 for them)
    zone(zone_name)

    # when the certificate is ordered, skipping the precheck
    with pytest.raises(hwacme.CertificateError) as info:
        hwacme.issue_certificate(
            names=[zone_name],
            directory_url=PEBBLE,
            account_key_pem=hwacme.new_account_key_pem(),
            challenge_files=NowhereWebroot(),
            verify=PEBBLE_CERT,
        )

    # then the CA's validation error comes back as an actionable, permanent reason
    assert info.value.code == "validation_failed"
    assert info.value.permanent is True
    assert zone_name in str(info.value)


@pytest.mark.node
def test_installed_certificate_files_are_root_only_and_the_key_is_not_logged():
    # given an issued-looking certificate and key (a self-signed pair is enough here)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hw-install.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    chain = cert.public_bytes(Encoding.PEM).decode()

    # when the node agent installs them
    installed = agent_certs.install(
        domain="hw-install.test", fullchain_pem=chain, key_pem=key_pem.decode()
    )

    # then the files are there, root-only
    target = Path(agent_certs.CERTS_DIR) / "hw-install.test"
    try:
        assert installed["created"] is True
        assert (target / "privkey.pem").read_bytes() == key_pem
        assert (target / "fullchain.pem").read_text() == chain
        assert oct(target.stat().st_mode & 0o777) == "0o700"
        assert oct((target / "privkey.pem").stat().st_mode & 0o777) == "0o600"
    finally:
        agent_certs.remove(domain="hw-install.test")
    assert not target.exists()


def test_bad_names_are_refused_before_anything_is_sent():
    with pytest.raises(ProvisioningRefused):
        hwacme.precheck_names(["bad name.test"], node_ip="127.0.0.1", nameserver="127.0.0.1")
    with pytest.raises(AgentError):
        agent_certs.install(
            domain="x.test; reboot", fullchain_pem="-----BEGIN X", key_pem="-----BEGIN Y"
        )


# --- renewal planning ------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def state(key, days_left, failures=0, hours_since_attempt=None):
    return hwacme.CertificateState(
        key=key,
        not_after=None if days_left is None else NOW + dt.timedelta(days=days_left),
        failures=failures,
        last_attempt=None
        if hours_since_attempt is None
        else NOW - dt.timedelta(hours=hours_since_attempt),
    )


def test_certificates_within_30_days_are_renewed_soonest_first():
    policy = hwacme.RenewalPolicy()
    plan = policy.plan(
        [state("late", 29), state("fine", 31), state("urgent", 2), state("new", None)], NOW
    )
    assert plan == ["new", "urgent", "late"]


def test_failed_renewals_back_off_exponentially_up_to_a_cap():
    policy = hwacme.RenewalPolicy()
    assert [policy.backoff(n).total_seconds() / 3600 for n in range(5)] == [0, 1, 2, 4, 8]
    assert policy.backoff(20) == dt.timedelta(days=2)
    # three failures: wait 4 hours; after 3 hours it is skipped, after 5 it is tried
    assert policy.plan([state("x", 5, failures=3, hours_since_attempt=3)], NOW) == []
    assert policy.plan([state("x", 5, failures=3, hours_since_attempt=5)], NOW) == ["x"]


def test_the_order_budget_limits_renewals_per_window():
    policy = hwacme.RenewalPolicy(budget=3, window=dt.timedelta(hours=3))
    policy.record_order(NOW - dt.timedelta(hours=4))  # outside the window
    policy.record_order(NOW - dt.timedelta(hours=1))
    plan = policy.plan([state(f"d{i}", i) for i in range(5)], NOW)
    assert plan == ["d0", "d1"]
