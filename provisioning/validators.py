"""Validation of every value that can reach a node's shell.

Each function returns the normalized value or raises ``ProvisioningRefused`` with a message
a customer or an agent can act on. Nothing is sent to a node that has not passed through one
of these; the command builder in ``provisioning.ssh`` then quotes it with ``shlex``.
"""

from __future__ import annotations

import re

import idna

from provisioning.errors import ProvisioningRefused

# A DNS label after IDNA encoding: letters, digits and inner hyphens, 1 to 63 characters.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
_USERNAME = re.compile(r"^[a-z][a-z0-9]{2,31}$")
_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")
_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_HOST = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")

SUSPENSION_REASONS = ("non_payment", "abuse", "staff")


def _refuse(message: str, code: str) -> ProvisioningRefused:
    return ProvisioningRefused(message, code=code)


def validate_domain(value: object) -> str:
    """A fully qualified domain name, returned in its ASCII (IDNA) form, lower case.

    Refuses anything that is not a plain host name: whitespace, control characters, shell
    metacharacters, ``..``, a leading ``www.`` (the engine serves ``www`` itself), labels
    over 63 characters, names over 253, and Unicode that IDNA 2008 does not allow
    (invisible characters, symbols, A-labels that do not decode to a valid name).
    """
    if not isinstance(value, str):
        raise _refuse("The domain must be text.", "domain_type")
    raw = value.strip().rstrip(".")
    if not raw:
        raise _refuse("Enter a domain name, for example example.com.", "domain_empty")
    if raw != value.strip().rstrip(".") or any(c.isspace() or ord(c) < 32 for c in value):
        raise _refuse("A domain name cannot contain spaces or control characters.", "domain_chars")
    if ".." in raw or raw.startswith("."):
        raise _refuse("A domain name cannot contain empty labels ('..').", "domain_empty_label")
    labels = []
    for label in raw.lower().split("."):
        if len(label) > 63:
            raise _refuse(
                "Each part of a domain name can have at most 63 characters.", "domain_label"
            )
        labels.append(_ascii_label(label, raw))
    ascii_name = ".".join(labels)
    if len(ascii_name) > 253:
        raise _refuse("A domain name can have at most 253 characters.", "domain_length")
    if len(labels) < 2:
        raise _refuse("Enter a full domain name such as example.com.", "domain_not_fqdn")
    if not _TLD.match(labels[-1]):
        raise _refuse(f"{labels[-1]!r} is not a top-level domain.", "domain_tld")
    if labels[0] == "www" and len(labels) > 2:
        raise _refuse(
            "Enter the domain without 'www.': the www name is added automatically.", "domain_www"
        )
    return ascii_name


def _ascii_label(label: str, raw: str) -> str:
    """One label in ASCII. International labels go through IDNA 2008 (the ``idna`` package),
    which refuses invisible characters, symbols and other look-alike tricks that the older
    IDNA 2003 codec would silently drop or map."""
    if label.isascii() and not label.startswith("xn--"):
        if not _LABEL.match(label):
            raise _refuse(
                f"{label!r} is not allowed in a domain name: use letters, digits and hyphens.",
                "domain_label",
            )
        return label
    try:
        if label.isascii():
            idna.ulabel(label)  # an A-label must decode to a valid name
            ascii_label = label
        else:
            ascii_label = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna") from None
    if not _LABEL.match(ascii_label):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna")
    return ascii_label


def validate_username(value: object) -> str:
    """A Linux account name made by the engine: lower-case letters and digits, 3-32 long."""
    if not isinstance(value, str) or not _USERNAME.match(value):
        raise _refuse(f"{value!r} is not a valid account name.", "username")
    return value


def validate_db_name(value: object) -> str:
    """A MariaDB database or user name: lower-case letters, digits and underscores."""
    if not isinstance(value, str) or not _DB_NAME.match(value):
        raise _refuse(f"{value!r} is not a valid database name.", "db_name")
    return value


def validate_node_name(value: object) -> str:
    if not isinstance(value, str) or not _NODE_NAME.match(value):
        raise _refuse(
            f"{value!r} is not a valid node name: use lower-case letters, digits, dots, hyphens.",
            "node_name",
        )
    return value


def validate_host(value: object) -> str:
    """An SSH address: a host name or an IPv4/IPv6 address (never passed to a shell)."""
    if not isinstance(value, str) or not _HOST.match(value):
        raise _refuse(f"{value!r} is not a valid host name or address.", "host")
    return value


def validate_reason(value: object) -> str:
    if value not in SUSPENSION_REASONS:
        raise _refuse(
            f"{value!r} is not a suspension reason: use one of {', '.join(SUSPENSION_REASONS)}.",
            "reason",
        )
    return str(value)


def validate_positive_int(value: object, *, name: str, maximum: int = 10**9) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise _refuse(f"{name} must be a whole number between 1 and {maximum}.", "number")
    return value
