"""TLS certificates from an ACME server over HTTP-01, through the node's webroot.

The exchange with the CA runs in the worker (the ``acme`` library), which holds the ACME
account key; only the challenge answers and the issued certificate travel to the node, where
the node agent keeps them in root's own directories (``cert.*`` actions). Before the CA is
contacted, ``precheck_names`` asks the node's nameserver whether every name points at the
node: a name that does not gets the reason "the domain does not point here" without spending
an order or a failed validation against the CA's rate limits.

``RenewalPolicy`` decides which certificates are due (30 days before expiry), spaces out
attempts after failures (exponential backoff) and keeps the number of orders per window under
a budget, so a broken domain cannot use up the CA's limits for everyone else.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dns.exception
import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from provisioning.errors import ProvisioningRefused, StepError
from provisioning.resources import dns as hwdns
from provisioning.validators import domain_to_ascii, validate_ip

LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class CertificateError(StepError):
    """A certificate could not be issued; ``code`` names the reason for the panel. Transient
    unless raised with ``permanent=True``."""

    permanent = False


# --- before the CA: do the names point at the node? -----------------------------------------


def precheck_names(
    names: Sequence[str], *, node_ip: str, nameserver: str, port: int = 53, timeout: float = 3.0
) -> dict[str, list[str]]:
    """Refuse names whose A/AAAA records (as the node's nameserver answers) miss the node.

    Returns what each name resolved to. Raises a permanent ``CertificateError`` with code
    ``not_pointing`` and the customer-facing reason otherwise.
    """
    node_ip = validate_ip(node_ip)
    rtype = "AAAA" if ":" in node_ip else "A"
    seen: dict[str, list[str]] = {}
    wrong = []
    for raw in names:
        name = domain_to_ascii(raw)
        try:
            _, addresses, _ = hwdns.query(
                name, rtype, nameserver=nameserver, port=port, timeout=timeout
            )
        except (OSError, dns.exception.DNSException) as exc:
            raise CertificateError(
                f"Could not ask the nameserver about {name}: {exc}.", code="dns_unreachable"
            ) from None
        seen[name] = addresses
        if node_ip not in addresses:
            wrong.append(f"{name} ({', '.join(addresses) or 'no address'})")
    if wrong:
        raise CertificateError(
            "The domain does not point here: "
            + "; ".join(wrong)
            + f" should resolve to {node_ip}. Update the DNS records and try again.",
            permanent=True,
            code="not_pointing",
        )
    return seen


# --- the challenge files --------------------------------------------------------------------


class ChallengeFiles(Protocol):
    """Where HTTP-01 key authorizations are published (the node's ACME webroot)."""

    def put(self, token: str, key_authorization: str) -> None: ...

    def remove(self, token: str) -> None: ...


def check_token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise CertificateError(
            f"The CA sent an unusable challenge token {token!r}.", permanent=True
        )
    return token


# --- keys, certificates ----------------------------------------------------------------------


def new_account_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_certificate_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_info(fullchain_pem: str | bytes) -> tuple[list[str], dt.datetime]:
    """The names and the expiry (aware, UTC) of the first certificate in a chain."""
    data = fullchain_pem.encode() if isinstance(fullchain_pem, str) else fullchain_pem
    cert = x509.load_pem_x509_certificates(data)[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return sorted(names), cert.not_valid_after_utc


@dataclass(frozen=True)
class IssuedCertificate:
    names: tuple[str, ...]
    fullchain_pem: str
    key_pem: str
    not_after: dt.datetime
    account_uri: str


# --- the ACME exchange -----------------------------------------------------------------------


def _acme_problem(exc: BaseException) -> CertificateError:
    """Turn what the acme library raised into a reason and a retry decision."""
    if isinstance(exc, errors.ValidationError):
        details = []
        for authz in exc.failed_authzrs:
            for chall in authz.body.challenges:
                if chall.error is not None:
                    details.append(f"{authz.body.identifier.value}: {chall.error.detail}")
        return CertificateError(
            "The certificate authority could not validate "
            + ("; ".join(details) or "the domain")
            + ". Check that the domain points here and that the site answers over HTTP.",
            permanent=True,
            code="validation_failed",
        )
    if isinstance(exc, messages.Error):
        if exc.code == "rateLimited":
            return CertificateError(
                f"The certificate authority's rate limit was reached: {exc.detail}",
                permanent=False,
                code="rate_limited",
            )
        transient = exc.code in ("serverInternal", "badNonce")
        return CertificateError(
            f"The certificate authority refused the request: {exc.detail or exc.code}",
            permanent=not transient,
            code=exc.code or "acme_error",
        )
    if isinstance(exc, errors.TimeoutError | TimeoutError):
        return CertificateError(
            "The certificate authority did not finish in time.", permanent=False, code="timeout"
        )
    return CertificateError(
        f"Could not talk to the certificate authority: {exc}", permanent=False, code="acme_network"
    )


def issue_certificate(
    *,
    names: Sequence[str],
    directory_url: str,
    account_key_pem: bytes,
    challenge_files: ChallengeFiles,
    email: str | None = None,
    verify: bool | str = True,
    timeout: float = 90.0,
    key_pem: bytes | None = None,
) -> IssuedCertificate:
    """Order a certificate for ``names`` and answer HTTP-01 through ``challenge_files``.

    ``verify`` is passed to the HTTP client: True, or the path of the CA's listener
    certificate (Pebble). Challenge files are removed afterwards, whatever happened.
    Run ``precheck_names`` first; this function always talks to the CA.
    """
    domains = [domain_to_ascii(n) for n in names]
    if not domains:
        raise ProvisioningRefused("A certificate needs at least one name.", code="cert_names")
    key_pem = key_pem or new_certificate_key_pem()
    jwk = jose.JWKRSA.load(account_key_pem)
    tokens: list[str] = []
    try:
        # requests also takes the path of a CA bundle here (Pebble's own listener certificate).
        net = client.ClientNetwork(jwk, verify_ssl=verify, user_agent="hostwright")  # type: ignore[arg-type]
        directory = client.ClientV2.get_directory(directory_url, net)
        acme_client = client.ClientV2(directory, net=net)
        registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
        try:
            account = acme_client.new_account(registration)
        except errors.ConflictError as exc:
            # The key already has an account: use it.
            account = acme_client.query_registration(
                messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            )
        net.account = account
        order = acme_client.new_order(crypto_util.make_csr(key_pem, domains))
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # reused from an earlier order
            chall = next(
                (c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                None,
            )
            if chall is None:
                raise CertificateError(
                    "The certificate authority offered no HTTP-01 challenge.", permanent=True
                )
            response, validation = chall.response_and_validation(jwk)
            token = chall.chall.encode("token")
            challenge_files.put(token, validation)
            tokens.append(token)
            acme_client.answer_challenge(chall, response)
        deadline = dt.datetime.now() + dt.timedelta(
            seconds=timeout
        )  # acme compares naive local times
        order = acme_client.poll_and_finalize(order, deadline)
    except CertificateError:
        raise
    except Exception as exc:
        raise _acme_problem(exc) from exc
    finally:
        for token in tokens:
            challenge_files.remove(token)
    found, not_after = certificate_info(order.fullchain_pem)
    if set(found) != set(domains):
        raise CertificateError(
            f"The certificate authority issued a certificate for {found}, not {domains}.",
            permanent=True,
            code="wrong_names",
        )
    return IssuedCertificate(
        names=tuple(domains),
        fullchain_pem=order.fullchain_pem,
        key_pem=key_pem.decode(),
        not_after=not_after,
        account_uri=str(account.uri),
    )


def obtain_certificate(
    *,
    names: Sequence[str],
    node_ip: str,
    nameserver: str,
    nameserver_port: int = 53,
    directory_url: str,
    account_key_pem: bytes,
    challenge_files: ChallengeFiles,
    email: str | None = None,
    verify: bool | str = True,
) -> IssuedCertificate:
    """Precheck the names against the node's nameserver, then order the certificate.

    A name that does not point at the node fails with code ``not_pointing`` before any
    request reaches the CA, so it costs nothing against the CA's rate limits.
    """
    precheck_names(names, node_ip=node_ip, nameserver=nameserver, port=nameserver_port)
    return issue_certificate(
        names=names,
        directory_url=directory_url,
        account_key_pem=account_key_pem,
        challenge_files=challenge_files,
        email=email,
        verify=verify,
    )


# --- renewal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateState:
    """What the panel knows about one certificate when planning renewals."""

    key: str  # the domain (or the panel's id) the certificate belongs to
    not_after: dt.datetime | None  # None: never issued
    failures: int = 0  # consecutive failed attempts
    last_attempt: dt.datetime | None = None


@dataclass
class RenewalPolicy:
    """When to renew, how long to wait after failures, how many orders a window allows."""

    renew_before: dt.timedelta = dt.timedelta(days=30)
    first_backoff: dt.timedelta = dt.timedelta(hours=1)
    max_backoff: dt.timedelta = dt.timedelta(days=2)
    budget: int = 50  # orders per window, ours across all customers of this CA account
    window: dt.timedelta = dt.timedelta(hours=3)
    recent_orders: list[dt.datetime] = field(default_factory=list)

    def due(self, state: CertificateState, now: dt.datetime) -> bool:
        return state.not_after is None or state.not_after - now <= self.renew_before

    def backoff(self, failures: int) -> dt.timedelta:
        """Wait after ``failures`` consecutive failures: 1h, 2h, 4h ... up to two days."""
        if failures <= 0:
            return dt.timedelta(0)
        return min(self.first_backoff * (2 ** (failures - 1)), self.max_backoff)

    def next_attempt(self, state: CertificateState) -> dt.datetime | None:
        if state.last_attempt is None or state.failures == 0:
            return None
        return state.last_attempt + self.backoff(state.failures)

    def budget_left(self, now: dt.datetime) -> int:
        used = sum(1 for t in self.recent_orders if now - t < self.window)
        return max(self.budget - used, 0)

    def plan(self, states: Iterable[CertificateState], now: dt.datetime) -> list[str]:
        """The certificates to renew now: due, not backing off, soonest expiry first, and no
        more than the budget left in the window."""
        ready = []
        for state in states:
            if not self.due(state, now):
                continue
            after = self.next_attempt(state)
            if after is not None and now < after:
                continue
            ready.append(state)
        ready.sort(key=lambda s: (s.not_after is not None, s.not_after or now))
        return [s.key for s in ready[: self.budget_left(now)]]

    def record_order(self, when: dt.datetime) -> None:
        self.recent_orders.append(when)
        cutoff = when - self.window
        self.recent_orders[:] = [t for t in self.recent_orders if t > cutoff]
