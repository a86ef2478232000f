"""TLS certificates on the node: HTTP-01 challenge files, issued certificates and keys.

The ACME exchange runs on the panel (it holds the ACME account key); the node publishes the
challenge answers and stores what was issued:

- challenge files live in root's own webroot ``/var/lib/hostwright/acme`` (served for every
  site by ``snippets/hostwright-acme.conf``), never in a customer's home;
- certificates and keys live in ``/etc/hostwright/certs/<domain>/`` (root only).

Every directory on the way is opened without following links and must belong to root.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hwagent import _rootfs, validate
from hwagent.errors import AgentError
from hwagent.registry import action
from hwagent.sites import TLS_DIR

WEBROOT = "/var/lib/hostwright/acme"
CHALLENGE_DIR = f"{WEBROOT}/.well-known/acme-challenge"
CERTS_DIR = "/etc/hostwright/certs"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_KEY_AUTHZ = re.compile(r"^[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{16,128}$")
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z ]{1,40})-----\n[A-Za-z0-9+/=\n]{16,20000}-----END \1-----\n?"
)
MAX_PEM = 64 * 1024


def _token(value: object) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise AgentError("invalid", "that is not an ACME challenge token")
    return value


def _pem(value: object, *, kinds: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_PEM:
        raise AgentError("invalid", f"the {what} is not PEM text")
    text = value.strip() + "\n"
    blocks = list(_PEM_BLOCK.finditer(text))
    if not blocks or "".join(m.group(0).rstrip("\n") + "\n" for m in blocks) != text:
        raise AgentError("invalid", f"the {what} is not PEM text")
    if any(m.group(1) not in kinds for m in blocks):
        raise AgentError("invalid", f"the {what} holds something else than {' or '.join(kinds)}")
    return text


@action("cert.challenge_put")
def challenge_put(*, token: str, key_authorization: str) -> dict[str, Any]:
    """Publish one HTTP-01 answer at ``/.well-known/acme-challenge/<token>`` (mode 0644)."""
    token = _token(token)
    if not isinstance(key_authorization, str) or not _KEY_AUTHZ.match(key_authorization):
        raise AgentError("invalid", "that is not an ACME key authorization")
    fd = _rootfs.open_dir(CHALLENGE_DIR, create_mode=0o755)
    try:
        changed = _rootfs.write_file(fd, token, key_authorization.encode(), mode=0o644)
    finally:
        os.close(fd)
    return {"changed": changed}


@action("cert.challenge_remove")
def challenge_remove(*, token: str) -> dict[str, Any]:
    """Remove one challenge file (a no-op when it is gone)."""
    token = _token(token)
    try:
        fd = _rootfs.open_dir(CHALLENGE_DIR)
    except AgentError as exc:
        if exc.code == "not_found":
            return {"changed": False}
        raise
    try:
        return {"changed": _rootfs.remove_file(fd, token)}
    finally:
        os.close(fd)


@action("cert.install")
def install(*, domain: str, fullchain_pem: str, key_pem: str) -> dict[str, Any]:
    """Store the certificate chain and its key for ``domain`` (root only, 0600).

    ``created`` is true when the domain had no certificate before (an undo removes only a
    certificate it installed; a renewal leaves the old one serving when it fails). The key is
    written before the chain, so a reader that finds the new chain finds its key.
    """
    name = validate.domain(domain)
    chain = _pem(fullchain_pem, kinds=("CERTIFICATE",), what="certificate chain")
    key = _pem(key_pem, kinds=("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"), what="key")
    base = _rootfs.open_dir(CERTS_DIR, create_mode=0o700)
    try:
        fd = _rootfs.open_dir(f"{CERTS_DIR}/{name}", create_mode=0o700)
    finally:
        os.close(base)
    try:
        try:
            os.stat("fullchain.pem", dir_fd=fd, follow_symlinks=False)
            had = True
        except FileNotFoundError:
            had = False
        changed = _rootfs.write_file(fd, "privkey.pem", key.encode(), mode=0o600)
        changed = _rootfs.write_file(fd, "fullchain.pem", chain.encode(), mode=0o600) or changed
    finally:
        os.close(fd)
    return {"changed": changed, "created": not had, "path": f"{CERTS_DIR}/{name}"}


@action("cert.remove")
def remove(*, domain: str) -> dict[str, Any]:
    """Remove the domain's certificate and key (a no-op when there are none)."""
    name = validate.domain(domain)
    try:
        fd = _rootfs.open_dir(CERTS_DIR)
    except AgentError as exc:
        if exc.code == "not_found":
            return {"changed": False}
        raise
    try:
        return {"changed": _rootfs.remove_tree(fd, name)}
    finally:
        os.close(fd)


@action("cert.inventory")
def inventory(*, domains: list[str]) -> dict[str, Any]:
    """Which of ``domains`` have a certificate on this node."""
    names = [validate.domain(d) for d in domains[:500]]
    return {
        "changed": False,
        "certificates": [n for n in names if os.path.isfile(f"{CERTS_DIR}/{n}/fullchain.pem")],
    }


def tls_config(*, domain: str, listen_ip: str | None) -> str:
    """The HTTPS part of a site's server block (the site's block includes it by name)."""
    certs = f"{CERTS_DIR}/{domain}"
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


@action("cert.https_ensure")
def https_ensure(*, account: str, domain: str, listen_ip: str | None = None) -> dict[str, Any]:
    """Serve the site over HTTPS with the domain's certificate (and redirect plain HTTP).

    Writes the site's HTTPS part, ``/etc/nginx/hostwright/tls/<account>/https.conf``, which
    the site's server block includes (a block written before that layout includes
    ``tls/<account>.conf``: that file is written for it instead, until the block is rewritten);
    nginx checks it before it reloads (``hwagent._nginx``), and a refused one leaves the
    previous configuration live. Refuses when the domain has no certificate on the node.
    ``created`` says whether the site served HTTPS before.
    """
    import ipaddress

    from hwagent import _nginx, sites, system

    account = validate.linux_user(account)
    name = validate.domain(domain)
    if listen_ip is not None:
        try:
            listen_ip = str(ipaddress.ip_address(listen_ip))
        except ValueError:
            raise AgentError("invalid", "the site's address is not an IP address") from None
    if not os.path.isfile(f"{CERTS_DIR}/{name}/fullchain.pem"):
        raise AgentError("not_found", f"there is no certificate for {name} on this node")
    block = system.read_text(sites.site_path(account)) or ""
    if sites.legacy_include(account) in block:
        path = sites.legacy_https_path(account)
        os.close(_rootfs.open_dir(TLS_DIR, create_mode=0o755))
    else:
        path = sites.https_path(account)
        os.close(_rootfs.open_dir(sites.https_dir(account), create_mode=0o755))
    had = os.path.lexists(sites.https_path(account)) or os.path.lexists(
        sites.legacy_https_path(account)
    )
    changed = _nginx.swap(path, tls_config(domain=name, listen_ip=listen_ip))
    return {"changed": changed, "created": not had, "path": path}


@action("cert.https_remove")
def https_remove(*, account: str) -> dict[str, Any]:
    """Stop serving the site over HTTPS (a no-op when it does not)."""
    import contextlib

    from hwagent import _nginx, sites

    account = validate.linux_user(account)
    changed = _nginx.change(
        {sites.https_path(account): None, sites.legacy_https_path(account): None}
    )
    with contextlib.suppress(OSError):  # gone already, or not empty
        os.rmdir(sites.https_dir(account))
    return {"changed": changed}
