"""An account's nginx server block: its site, or the "suspended" page in its place.

``/etc/nginx/hostwright/sites/<user>.conf`` (included from ``conf.d/hostwright.conf``) serves
the domain and ``www.`` of it from ``/home/<user>/public_html`` through the account's PHP-FPM
socket. The file is built here from typed values, checked with ``nginx -t`` together with the
whole configuration, and only then loaded; a failing check leaves the previous file live.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from hwagent import _confswap, system, validate
from hwagent.errors import AgentError
from hwagent.pools import pool_socket
from hwagent.registry import action

SITES_DIR = "/etc/nginx/hostwright/sites"
SUSPENDED_ROOT = "/var/lib/hostwright/suspended"
NGINX_PID = "/run/nginx.pid"


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


def tls_includes(user: str) -> str:
    """ACME challenges for the site's names, and its HTTPS part once it has a certificate
    (a pattern include: nothing until the certificate's file exists)."""
    return (
        "    include /etc/nginx/snippets/hostwright-acme*.conf;\n"
        f"    include /etc/nginx/hostwright/tls/{user}[.]conf;"
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
    location ~ /\\.(?!well-known) {{ deny all; }}
    location ~ \\.php$ {{
        try_files $uri =404;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
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


def reload_nginx() -> None:
    """Reload nginx and wait until its old workers stopped taking requests, so the new
    configuration is what answers once the action reports success."""
    master = _confswap.pid_from(NGINX_PID)
    if master is None:
        if system.have_systemd():
            system.run(["systemctl", "restart", "nginx"], what="starting nginx")
        else:
            system.run(["nginx"], what="starting nginx")
        return
    old = _confswap.children(master, b"nginx: worker process")
    if system.have_systemd():
        system.run(["systemctl", "reload", "nginx"], what="reloading nginx")
    else:
        system.run(["nginx", "-s", "reload"], what="reloading nginx")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(_confswap.cmdline_of(p) == b"nginx: worker process" for p in old):
            return
        time.sleep(0.025)
    raise AgentError("busy", "nginx did not finish reloading", permanent=False)


def swap_site(path: str, content: str | None) -> bool:
    return _confswap.swap_config(
        "nginx", path, content, check=["nginx", "-t", "-q"], reload=reload_nginx
    )


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
    return {"changed": swap_site(site_path(user), content), "path": site_path(user)}


@action("site.remove")
def remove(*, user: str) -> dict[str, Any]:
    """Remove the account's server block (nothing to do when it is gone)."""
    user = validate.linux_user(user)
    return {"changed": swap_site(site_path(user), None)}
