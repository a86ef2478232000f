"""An account's nginx server block: its site, or the "suspended" page in its place.

``/etc/nginx/hostwright/sites/<user>.conf`` (included from ``conf.d/hostwright.conf``) serves
the domain and ``www.`` of it from ``/home/<user>/public_html`` through the account's PHP-FPM
socket. The file is built here from typed values and changed through ``hwagent._nginx``
(checked on its own, then one reload); a refused file leaves the previous one live.

What every block shares is set once for the whole node, at the http level
(``conf.d/hostwright-http.conf``, 30-nginx.sh): the FastCGI parameters and ``$hw_hidden``
(the URI names a hidden file other than ``.well-known``). A block that repeated them parsed
and held them once per site: most of the time a reload took on a node with many sites.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from hwagent import _nginx, _rootfs, system, validate
from hwagent.errors import AgentError
from hwagent.pools import pool_socket
from hwagent.registry import action

SITES_DIR = "/etc/nginx/hostwright/sites"
SUSPENDED_ROOT = "/var/lib/hostwright/suspended"
TLS_DIR = "/etc/nginx/hostwright/tls"


def site_path(user: str) -> str:
    return f"{SITES_DIR}/{user}.conf"


def docroot(user: str) -> str:
    return f"/home/{user}/public_html"


def listen(ip: str) -> str:
    """``80`` on the shared addresses, ``<ip>:80`` for a dedicated one."""
    if not ip:
        return "80"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise AgentError("invalid", f"{ip[:60]!r} is not an IP address") from None
    return f"[{address}]:80" if address.version == 6 else f"{address}:80"


def https_dir(user: str) -> str:
    return f"{TLS_DIR}/{user}"


def https_path(user: str) -> str:
    """The site's HTTPS part (``hwagent.certs`` writes it once the domain has a certificate)."""
    return f"{https_dir(user)}/https.conf"


def legacy_https_path(user: str) -> str:
    """Where the HTTPS part was before: one folder for every site's, included by a pattern
    (``<user>[.]conf``) that nginx matched by reading the whole folder, for every site at every
    reload: a cost growing with the square of the sites on a node where most have HTTPS."""
    return f"{TLS_DIR}/{user}.conf"


def has_https(user: str) -> bool:
    """The site has its HTTPS part (in either layout)."""
    return any(os.path.isfile(p) for p in (https_path(user), legacy_https_path(user)))


def legacy_include(user: str) -> str:
    return f"include {TLS_DIR}/{user}[.]conf;"


def tls_includes(user: str) -> str:
    """ACME challenges for the site's names, and its HTTPS part once it has a certificate
    (a pattern include in the account's own folder: nothing until the part exists)."""
    return (
        "    include /etc/nginx/snippets/hostwright-acme*.conf;\n"
        f"    include {https_dir(user)}/*.conf;"
    )


def site_config(*, service: int, user: str, domain: str, ip: str) -> str:
    return f"""# managed by Hostwright: service {service}, {domain}
server {{
    listen {listen(ip)};
    server_name {domain} www.{domain};
{tls_includes(user)}
    root {docroot(user)};
    index index.php index.html;
    access_log /var/log/nginx/hw-{user}.access.log;
    error_log /var/log/nginx/hw-{user}.error.log;
    if ($hw_hidden) {{ return 403; }}
    location ~ \\.php$ {{
        try_files $uri =404;
        fastcgi_pass unix:{pool_socket(user)};
    }}
}}
"""


def suspended_config(*, service: int, user: str, domain: str, ip: str) -> str:
    return f"""# managed by Hostwright: service {service}, {domain} (suspended)
server {{
    listen {listen(ip)};
    server_name {domain} www.{domain};
{tls_includes(user)}
    root {SUSPENDED_ROOT};
    error_page 503 /index.html;
    location = /index.html {{ internal; }}
    location / {{ return 503; }}
}}
"""


def swap_site(user: str, content: str | None) -> bool:
    """The server block changed; a block written in this layout also moves the site's HTTPS
    part out of the shared folder into the account's own, in the same reload."""
    files: dict[str, str | None] = {site_path(user): content}
    legacy = system.read_text(legacy_https_path(user)) if content is not None else None
    if legacy is not None:
        os.close(_rootfs.open_dir(https_dir(user), create_mode=0o755))
        files[https_path(user)] = legacy
        files[legacy_https_path(user)] = None
    return _nginx.change(files)


@action("site.ensure")
def ensure(
    *, user: str, service: int, domain: str, ip: str = "", suspended: bool = False
) -> dict[str, Any]:
    """The account's server block: its site, or with ``suspended`` the suspended page.

    Looks at the current file first: the same content changes nothing and reloads nothing.
    On a failed check the previous file stays live (``invalid``).
    """
    user = validate.linux_user(user)
    service = validate.positive_int(service, name="service")
    domain = validate.domain(domain)
    build = suspended_config if suspended else site_config
    content = build(service=service, user=user, domain=domain, ip=ip)
    return {"changed": swap_site(user, content), "path": site_path(user)}


@action("site.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Remove the account's server block (nothing to do when it is gone)."""
    user = validate.linux_user(user)
    return {"changed": swap_site(user, None)}
