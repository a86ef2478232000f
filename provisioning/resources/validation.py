"""Validation of every value a node resource sends to a node.

Each function returns the normalized value or raises ``ResourceRefused`` with a message the
customer can act on. Patterns are strict allow-lists: a value that passes contains no shell
metacharacter, no whitespace, no ``..`` and no path separator, and is still quoted with
``shlex.quote`` wherever it reaches a shell.
"""

from __future__ import annotations

import ipaddress
import re

from provisioning.errors import ProvisioningRefused
from provisioning.resources.errors import ResourceRefused
from provisioning.validators import domain_to_ascii

_ACCOUNT = re.compile(r"^[a-z][a-z0-9]{2,31}$")
# MariaDB allows 64 characters for database names (and 80 for user names); the account
# prefix and its underscore count towards that.
_DB_SUFFIX = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
DB_NAME_MAX = 64
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")


def validate_domain(value: object) -> str:
    """A host name in lower-case ASCII (IDNA) form, without a trailing dot.

    The panel's one domain check (``provisioning.validators.domain_to_ascii``: IDNA 2008 with
    UTS-46 mapping, mixed scripts refused), with its refusal as a ``ResourceRefused``.
    """
    try:
        return domain_to_ascii(value)
    except ProvisioningRefused as exc:
        raise ResourceRefused(exc.messages[0], code="domain") from None


def validate_account(value: object) -> str:
    """An account's Linux user name, which also prefixes its databases."""
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise ResourceRefused(f"{value!r} is not a valid account name.", code="account")
    return value


def validate_db_name(*, account: str, name: object) -> str:
    """The full name of a database or database user: ``<account>_<name>``.

    The customer gives ``name`` with or without the prefix; the result always carries it.
    """
    account = validate_account(account)
    if not isinstance(name, str) or any(ord(c) < 32 for c in name):
        raise ResourceRefused("The database name must be one line of text.", code="db_name")
    suffix = name.strip().lower()
    if suffix.startswith(account + "_"):
        suffix = suffix[len(account) + 1 :]
    longest = min(32, DB_NAME_MAX - len(account) - 1)
    if not _DB_SUFFIX.match(suffix) or len(suffix) > longest:
        raise ResourceRefused(
            f"{name!r} is not a valid database name: use up to {longest} lower-case letters, "
            "digits and underscores.",
            code="db_name",
        )
    return f"{account}_{suffix}"


def validate_local_part(value: object) -> str:
    """The part of a mailbox address before the ``@``."""
    if not isinstance(value, str) or any(ord(c) < 32 for c in value):
        raise ResourceRefused("The mailbox name must be one line of text.", code="mailbox")
    local = value.strip().lower()
    if not _LOCAL_PART.match(local) or ".." in local:
        raise ResourceRefused(
            f"{value!r} is not a valid mailbox name: use letters, digits, dots, hyphens, "
            "underscores and plus signs.",
            code="mailbox",
        )
    return local


def validate_email(value: object) -> str:
    """A full e-mail address (forwarding target), returned in lower case."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise ResourceRefused(f"{value!r} is not an e-mail address.", code="email")
    local, domain = value.strip().rsplit("@", 1)
    return f"{validate_local_part(local)}@{validate_domain(domain)}"


def validate_ip(value: object, *, version: int | None = None) -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ResourceRefused(f"{value!r} is not an IP address.", code="ip") from None
    if version is not None and address.version != version:
        raise ResourceRefused(f"{value!r} is not an IPv{version} address.", code="ip")
    return str(address)


def validate_password(value: object, *, min_length: int = 10) -> str:
    """A password we store or hand to a node service: long enough, one line, printable."""
    if not isinstance(value, str) or len(value) < min_length:
        raise ResourceRefused(
            f"The password must have at least {min_length} characters.", code="password"
        )
    if len(value) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ResourceRefused(
            "The password cannot contain control characters or line breaks.", code="password"
        )
    return value


# Mail: the same limits the node agent applies.
MAX_QUOTA_MB = 1024 * 1024
MAX_FORWARD_TARGETS = 20


def validate_quota(quota_mb: int) -> int:
    if (
        not isinstance(quota_mb, int)
        or isinstance(quota_mb, bool)
        or not 1 <= quota_mb <= MAX_QUOTA_MB
    ):
        raise ResourceRefused(
            f"A mailbox quota must be between 1 and {MAX_QUOTA_MB} MB.", code="mail_quota"
        )
    return quota_mb


def validate_forward_targets(targets: list[str]) -> list[str]:
    """A forwarder's targets: valid addresses, duplicates dropped, between 1 and the maximum."""
    if not isinstance(targets, list):
        raise ResourceRefused("A forwarder's targets must be a list of addresses.", code="forward")
    dests = list(dict.fromkeys(validate_email(t) for t in targets))
    if not dests:
        raise ResourceRefused("A forwarder needs at least one target address.", code="forward")
    if len(dests) > MAX_FORWARD_TARGETS:
        raise ResourceRefused(
            f"A forwarder can have at most {MAX_FORWARD_TARGETS} targets.", code="forward"
        )
    return dests
