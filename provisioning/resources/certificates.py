"""Certificates as engine steps: precheck, ACME issue over HTTP-01, HTTPS in nginx.

Kind ``certificate_issue`` (also used to renew):

1. ``certificate_precheck`` asks the node's nameserver whether the domain and ``www`` point
   at the account's IP; if not, the operation fails with "The domain does not point here"
   before anything reaches the CA (no retries, nothing to undo).
2. ``certificate`` runs the ACME exchange in the worker; challenge files are written to the
   node's ACME webroot (served for every site by ``snippets/hostwright-acme.conf``), the
   certificate and key are installed under ``/etc/hostwright/certs/<domain>/``. The key is
   never recorded.
3. ``https`` writes ``/etc/nginx/hostwright/tls/<user>.conf``, which the site's server block
   includes: nginx then also listens on 443 with the certificate and redirects plain HTTP
   (except ACME challenges) to HTTPS. Suspension keeps working: the suspended server block
   includes the same file.

The CA is the operation's ``directory_url`` param (Let's Encrypt by default, from settings);
``ca_bundle`` is the CA listener's certificate for a test CA such as Pebble.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import StepRun
from provisioning.resources import acme as hwacme
from provisioning.resources.errors import ResourceError
from provisioning.resources.validation import validate_domain
from provisioning.ssh import action, cmd, put_file
from provisioning.steps.base import OperationKind, Step, StepContext, register_kind

TLS_DIR = "/etc/nginx/hostwright/tls"
PDNS_CONF = "/etc/powerdns/pdns.d/hostwright.conf"


def tls_path(user: str) -> str:
    return f"{TLS_DIR}/{user}.conf"


def tls_config(*, domain: str, listen_ip: str | None) -> str:
    """The HTTPS part of a site's server block (included into it)."""
    certs = f"{hwacme.CERTS_DIR}/{domain}"
    listen = "443 ssl"
    if listen_ip:
        listen = f"[{listen_ip}]:443 ssl" if ":" in listen_ip else f"{listen_ip}:443 ssl"
    return f"""# managed by Hostwright: HTTPS for {domain}
listen {listen};
ssl_certificate {certs}/fullchain.pem;
ssl_certificate_key {certs}/privkey.pem;
ssl_protocols TLSv1.2 TLSv1.3;
# Plain HTTP goes to HTTPS, except the ACME challenges that renew this certificate.
set $hw_to_https 0;
if ($scheme = http) {{ set $hw_to_https 1; }}
if ($request_uri ~ "^/\\.well-known/acme-challenge/") {{ set $hw_to_https 0; }}
if ($hw_to_https = 1) {{ return 301 https://$host$request_uri; }}
"""


def _names(ctx: StepContext) -> list[str]:
    domain = validate_domain(ctx.service.domain)
    return [domain, f"www.{domain}"]


def _node_ip(ctx: StepContext) -> str:
    ip = ctx.service.ip
    return str(ip.address if ip is not None else ctx.node.address)


def _dns_port(ctx: StepContext) -> int:
    probe = ctx.run([cmd("sed", "-n", "s/^local-port=//p", PDNS_CONF)])
    try:
        return int(probe.stdout.strip() or 53)
    except ValueError:
        return 53


def _as_step_error(exc: ResourceError, *, clean: bool = False) -> Exception:
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
    """HTTP-01 files in the node's ACME webroot, written through the step's SSH session."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def put(self, token: str, key_authorization: str) -> None:
        path = f"{hwacme.CHALLENGE_DIR}/{hwacme.check_token(token)}"
        self.ctx.run([put_file(path, key_authorization)])

    def remove(self, token: str) -> None:
        path = f"{hwacme.CHALLENGE_DIR}/{hwacme.check_token(token)}"
        self.ctx.run([cmd("rm", "-f", path)], check=False)


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
        except ResourceError as exc:
            raise _as_step_error(exc, clean=True) from exc
        ctx.resource("resolved", seen)


class Certificate(Step):
    name = "certificate"

    def apply(self, ctx: StepContext) -> None:
        domain = _names(ctx)[0]
        had = ctx.run(
            [cmd("test", "-s", f"{hwacme.CERTS_DIR}/{domain}/fullchain.pem")], check=False
        )
        ctx.resource("had_certificate", had.ok)
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
        except ResourceError as exc:
            raise _as_step_error(exc) from exc
        script = hwacme.install_certificate_script(
            domain=domain, fullchain_pem=issued.fullchain_pem, key_pem=issued.key_pem
        )
        label = f"install the certificate for {domain} (key not recorded)"
        ctx.run([cmd("bash", "-c", script.script, secrets=script.secrets, label=label)])
        # Mail clients asking for the domain by name (SNI) get this certificate too.
        ctx.agent([action("mail.sni.refresh")])
        ctx.resource("names", list(issued.names))
        ctx.resource("not_after", issued.not_after.isoformat())

    def undo(self, ctx: StepContext) -> None:
        applied = (
            StepRun.objects.filter(operation=ctx.operation, step=self.name, direction="apply")
            .order_by("-id")
            .first()
        )
        if applied is None or applied.resources.get("had_certificate", True):
            return  # a renewal: the certificate in place keeps serving
        script = hwacme.remove_certificate_script(domain=_names(ctx)[0])
        ctx.run([cmd("bash", "-c", script.script)])
        ctx.agent([action("mail.sni.refresh")])


class Https(Step):
    name = "https"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        user = str(ctx.service.username)
        ip = ctx.service.ip
        dedicated = ip.address if ip is not None and ip.kind == "dedicated" else None
        config = tls_config(domain=_names(ctx)[0], listen_ip=dedicated)
        ctx.run(
            [
                cmd("install", "-d", "-m", "0755", TLS_DIR),
                cmd(
                    "hw_cfg",
                    "nginx",
                    tls_path(user),
                    config,
                    label=f"stage, check (nginx -t) and swap in {tls_path(user)}",
                ),
            ]
        )
        ctx.resource("https", tls_path(user))

    def undo(self, ctx: StepContext) -> None:
        ctx.run([cmd("hw_cfg", "nginx", tls_path(str(ctx.service.username)))])


register_kind(
    OperationKind(
        name="certificate_issue",
        steps=[CertificatePrecheck, Certificate, Https],
        description="Issue (or renew) the site's certificate and serve HTTPS",
    )
)
