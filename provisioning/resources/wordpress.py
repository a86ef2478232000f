"""One-click WordPress for a site: what the panel checks, and WordPress's password hash.

The node agent's ``wordpress.install`` does the work as the account's own Linux user: it
checks that the site holds nothing but the welcome page (else ``docroot_not_empty``, naming
the files), copies Debian's WordPress into the docroot, writes ``wp-config.php`` with a
database password made on the node, and runs WordPress's own installer. The admin password
never reaches the node nor the panel's database rows: only its WordPress hash
(``wordpress_password_hash``) does, and the password is shown to the customer once.
"""

from __future__ import annotations

import re
import secrets
import string

from provisioning.errors import ProvisioningRefused
from provisioning.validators import domain_to_ascii, validate_email, validate_username

_TITLE = re.compile(r"[\w .,:!?&()'-]{1,80}")
_ADMIN = re.compile(r"[a-z][a-z0-9_.-]{2,59}")
_SECRET_CHARS = string.ascii_letters + string.digits + "_-"


def new_secret(length: int = 24) -> str:
    """A password or salt safe inside single-quoted PHP strings and shell words."""
    return "".join(secrets.choice(_SECRET_CHARS) for _ in range(length))


def validate_install(
    *, account: str, domain: str, title: str, admin_user: str, admin_email: str
) -> dict[str, str]:
    """The install's values as the node will check them again; refusals are for the customer."""
    validate_username(account)
    domain_to_ascii(domain)
    if not isinstance(title, str) or not _TITLE.fullmatch(title):
        raise ProvisioningRefused(
            "Use letters, digits and simple punctuation for the title.", code="wp_title"
        )
    if not isinstance(admin_user, str) or not _ADMIN.fullmatch(admin_user):
        raise ProvisioningRefused(
            f"{admin_user!r} is not a valid admin user name.", code="wp_admin"
        )
    return {"title": title, "admin_user": admin_user, "admin_email": validate_email(admin_email)}


_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _phpass_encode64(data: bytes, count: int) -> str:
    out = []
    i = 0
    while True:
        value = data[i]
        i += 1
        out.append(_ITOA64[value & 0x3F])
        if i < count:
            value |= data[i] << 8
        out.append(_ITOA64[(value >> 6) & 0x3F])
        if i >= count:
            break
        i += 1
        if i < count:
            value |= data[i] << 16
        out.append(_ITOA64[(value >> 12) & 0x3F])
        if i >= count:
            break
        i += 1
        out.append(_ITOA64[(value >> 18) & 0x3F])
        if i >= count:
            break
    return "".join(out)


def wordpress_password_hash(password: str, *, rounds_log2: int = 13) -> str:
    """WordPress's own password hash (phpass portable ``$P$``), so only the hash is stored
    and sent: the admin password is shown to the customer once and kept nowhere."""
    import hashlib

    salt = _phpass_encode64(secrets.token_bytes(6), 6)
    digest = hashlib.md5((salt + password).encode(), usedforsecurity=False).digest()
    for _ in range(1 << rounds_log2):
        digest = hashlib.md5(digest + password.encode(), usedforsecurity=False).digest()
    return "$P$" + _ITOA64[rounds_log2] + salt + _phpass_encode64(digest, 16)
