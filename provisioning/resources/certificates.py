"""Certificates as engine steps: precheck, ACME issue over HTTP-01, HTTPS in nginx.

Kind ``certificate_issue`` (also used to renew):

1. ``certificate_precheck`` asks the node's nameserver whether the domain and ``www`` point
   at the account's IP; if not, the operation fails with "The domain does not point here"
   before anything reaches the CA (no retries, nothing to undo).
2. ``certificate`` runs the ACME exchange in the worker, which holds the ACME account key;
   the node agent publishes each challenge answer in root's own ACME webroot (served for
   every site by ``snippets/hostwright-acme.conf``, never inside a customer's home) and stores
   the certificate and key under ``/etc/hostwright/certs/<domain>/``. The key is never
   recorded.
3. ``https`` has the node agent write ``/etc/nginx/hostwright/tls/<user>/https.conf``, which
   the site's server block includes: nginx then also listens on 443 with the certificate and
   redirects plain HTTP (except ACME challenges) to HTTPS. Suspension keeps working: the
   suspended server block includes the same file.

The CA is the operation's ``directory_url`` param (Let's Encrypt by default, from settings);
``ca_bundle`` is the CA listener's certificate for a test CA such as Pebble.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from provisioning.errors import PermanentStepError, StepError, TransientStepError
from provisioning.models import NodeResource
from provisioning.resources import acme as hwacme
from provisioning.ssh import action
from provisioning.steps.base import Step, StepContext
from provisioning.validators import domain_to_ascii


def _names(ctx: StepContext) -> list[str]:
    domain = domain_to_ascii(ctx.service.domain)
    return [domain, f"www.{domain}"]


def _node_ip(ctx: StepContext) -> str:
    ip = ctx.service.ip
    return str(ip.address if ip is not None else ctx.node.address)


def _dns_port(ctx: StepContext) -> int:
    [result] = ctx.agent([action("dns.server")])
    return int(result.data.get("port", 53))


def _as_step_error(exc: StepError, *, clean: bool = False) -> Exception:
    if exc.permanent:
        return PermanentStepError(exc.message, clean=clean)
    return TransientStepError(exc.message, clean=clean)


def account_key() -> bytes:
    """The panel's ACME account key (created on first use, readable by its owner only)."""
    path = Path(getattr(settings, "ACME_ACCOUNT_KEY", settings.VAR_DIR / "acme" / "account.pem"))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(hwacme.new_account_key_pem())
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_bytes()


class NodeChallengeFiles:
    """HTTP-01 answers published by the node agent in root's own ACME webroot (served for
    every site; never in a customer's home)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def put(self, token: str, key_authorization: str) -> None:
        self.ctx.agent(
            [
                action(
                    "cert.challenge_put",
                    token=hwacme.check_token(token),
                    key_authorization=key_authorization,
                )
            ]
        )

    def remove(self, token: str) -> None:
        self.ctx.agent(
            [action("cert.challenge_remove", token=hwacme.check_token(token))], check=False
        )


class CertificatePrecheck(Step):
    name = "certificate_precheck"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        try:
            seen = hwacme.precheck_names(
                _names(ctx),
                node_ip=_node_ip(ctx),
                nameserver=ctx.node.address,
                port=_dns_port(ctx),
            )
        except StepError as exc:
            raise _as_step_error(exc, clean=True) from exc
        ctx.resource("resolved", seen)


class Certificate(Step):
    """The ACME exchange in the worker (it holds the account key), the answers and the issued
    certificate on the node; ``created`` when the domain had no certificate before."""

    name = "certificate"

    def apply(self, ctx: StepContext) -> None:
        domain = _names(ctx)[0]
        ctx.check_free(NodeResource.Kind.CERTIFICATE, domain)
        params: dict[str, Any] = ctx.params
        try:
            issued = hwacme.issue_certificate(
                names=_names(ctx),
                directory_url=params.get("directory_url") or hwacme.LETSENCRYPT_DIRECTORY,
                account_key_pem=account_key(),
                challenge_files=NodeChallengeFiles(ctx),
                email=params.get("email") or None,
                verify=params.get("ca_bundle") or True,
            )
        except StepError as exc:
            raise _as_step_error(exc) from exc
        # Mail clients asking for the domain by name (SNI) get this certificate too.
        result, _ = ctx.agent(
            [
                action(
                    "cert.install",
                    secret=("key_pem",),
                    domain=domain,
                    fullchain_pem=issued.fullchain_pem,
                    key_pem=issued.key_pem,
                ),
                action("mail.sni.refresh"),
            ]
        )
        ctx.resource("created", bool(result.data.get("created")))
        ctx.resource("names", list(issued.names))
        ctx.resource("not_after", issued.not_after.isoformat())
        ctx.own(
            NodeResource.Kind.CERTIFICATE,
            domain,
            created=bool(result.data.get("created")),
            detail={"names": list(issued.names), "not_after": issued.not_after.isoformat()},
        )

    def undo(self, ctx: StepContext) -> None:
        # A renewal: the certificate in place keeps serving.
        ctx.undo_owned(
            NodeResource.Kind.CERTIFICATE,
            actions=lambda row: [
                action("cert.remove", domain=row.name),
                action("mail.sni.refresh"),
            ],
        )


class Https(Step):
    """nginx serves the site over HTTPS with its certificate and redirects plain HTTP."""

    name = "https"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        ip = ctx.service.ip
        dedicated = ip.address if ip is not None and ip.kind == "dedicated" else None
        [result] = ctx.agent(
            [
                action(
                    "cert.https_ensure",
                    account=str(ctx.service.username),
                    domain=_names(ctx)[0],
                    listen_ip=dedicated,
                )
            ]
        )
        ctx.resource("https", result.data.get("path"))
        ctx.resource("created", bool(result.data.get("created")))
        ctx.own(
            NodeResource.Kind.HTTPS,
            str(ctx.service.username),
            created=bool(result.data.get("created")),
            detail={"domain": _names(ctx)[0]},
        )

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.HTTPS,
            actions=lambda row: [action("cert.https_remove", account=row.name)],
        )
