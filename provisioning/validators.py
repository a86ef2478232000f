"""Validation of every value the panel sends to a node: one validator per kind of name.

Each function returns the normalized value or raises ``ProvisioningRefused`` with a message
a customer or an agent can act on. Nothing is sent to a node agent that has not passed
through one of these (the agent checks again). Patterns are allow-lists matched with
``re.fullmatch`` (``$`` would let a trailing newline through).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

from provisioning.errors import ProvisioningRefused

# A DNS label after IDNA encoding: letters, digits and inner hyphens, 1 to 63 characters.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_USERNAME = re.compile(r"[a-z][a-z0-9]{2,31}")
_DB_NAME = re.compile(r"[a-z][a-z0-9_]{2,63}")
# MariaDB allows 64 characters for database names (and 80 for user names); the account
# prefix and its underscore count towards that.
_DB_SUFFIX = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
DB_NAME_MAX = 64
_LOCAL_PART = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?")
_NODE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")

SUSPENSION_REASONS = ("non_payment", "abuse", "staff")


def _refuse(message: str, code: str) -> ProvisioningRefused:
    return ProvisioningRefused(message, code=code)


def validate_domain(value: object) -> str:
    """A domain a customer hosts, in its ASCII (IDNA) form: ``domain_to_ascii`` without ``www.``.

    The engine serves ``www`` itself, so a leading ``www.`` (on a name of three labels or
    more) is refused rather than hosted twice.
    """
    ascii_name = domain_to_ascii(value)
    labels = ascii_name.split(".")
    if labels[0] == "www" and len(labels) > 2:
        raise _refuse(
            "Enter the domain without 'www.': the www name is added automatically.", "domain_www"
        )
    return ascii_name


def domain_to_ascii(value: object) -> str:
    """A fully qualified host name, returned in its ASCII (IDNA) form, lower case.

    The one domain check of the panel: checkout, the API, the DNS and mail forms and the
    node resources all call it. Unicode goes through UTS-46 mapping (non-transitional, so
    "straße.de" stays ``xn--strae-oqa.de`` and is never turned into "strasse.de") and then
    IDNA 2008 (the ``idna`` package). Refused: whitespace, control and invisible characters,
    shell metacharacters, ``..``, labels over 63 characters, names over 253, symbols that
    IDNA 2008 does not allow, A-labels that do not decode to a valid name, and labels that
    mix scripts (Cyrillic or Greek letters among Latin ones: the look-alike trick).
    """
    if not isinstance(value, str):
        raise _refuse("The domain must be text.", "domain_type")
    raw = value.strip().rstrip(".")
    if not raw:
        raise _refuse("Enter a domain name, for example example.com.", "domain_empty")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise _refuse("A domain name cannot contain spaces or control characters.", "domain_chars")
    if not raw.isascii():
        raw = _uts46_map(raw)
    if ".." in raw or raw.startswith("."):
        raise _refuse("A domain name cannot contain empty labels ('..').", "domain_empty_label")
    labels = []
    for label in raw.lower().split("."):
        if len(label) > 63:
            raise _refuse(
                "Each part of a domain name can have at most 63 characters.", "domain_label"
            )
        labels.append(_ascii_label(label, value.strip()))
    ascii_name = ".".join(labels)
    if len(ascii_name) > 253:
        raise _refuse("A domain name can have at most 253 characters.", "domain_length")
    if len(labels) < 2:
        raise _refuse("Enter a full domain name such as example.com.", "domain_not_fqdn")
    if not _TLD.fullmatch(labels[-1]):
        raise _refuse(f"{labels[-1]!r} is not a top-level domain.", "domain_tld")
    return ascii_name


# Format characters (zero-width space, soft hyphen, ...) that UTS-46 would silently drop: a
# name that looks like another one is refused, not quietly changed. ZWNJ and ZWJ are kept:
# IDNA 2008 allows them only where a script needs them (CONTEXTJ rules).
_JOINERS = {"\u200c", "\u200d"}


def _uts46_map(raw: str) -> str:
    """Map a Unicode name the way browsers do (UTS-46, non-transitional): case folding,
    full-width forms and ideographic full stops, but no ß to ss."""
    if any(unicodedata.category(c) == "Cf" and c not in _JOINERS for c in raw):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna")
    try:
        return idna.uts46_remap(raw, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna") from None


# Scripts that may share a label (Unicode's "highly restrictive" profile, UTS #39): Latin
# with the scripts of Chinese, Japanese and Korean writing. Any other mix is refused.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name (``None`` for digits, marks, hyphen)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    if name.startswith(("CJK ", "IDEOGRAPHIC ")):
        return "HAN"
    if name.startswith("KATAKANA-HIRAGANA "):
        return None  # the prolonged sound mark, used by both kana scripts
    return name.split(" ", 1)[0] or None


def label_scripts(label: str) -> set[str]:
    """The scripts of the letters in one Unicode label."""
    return {s for s in map(_script, label) if s is not None}


def _check_single_script(ulabel: str, raw: str) -> None:
    scripts = label_scripts(ulabel)
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _SCRIPT_MIXES):
        raise _refuse(
            f"{raw!r} mixes letters of different alphabets ({', '.join(sorted(scripts)).lower()}) "
            "in one part of the name, which makes it look like another domain.",
            "domain_mixed_script",
        )


def _ascii_label(label: str, raw: str) -> str:
    """One label in ASCII. International labels go through IDNA 2008 (the ``idna`` package),
    which refuses invisible characters, symbols and other look-alike tricks that the older
    IDNA 2003 codec would silently drop or map."""
    if label.isascii() and not label.startswith("xn--"):
        if not _LABEL.fullmatch(label):
            raise _refuse(
                f"{label!r} is not allowed in a domain name: use letters, digits and hyphens.",
                "domain_label",
            )
        return label
    try:
        if label.isascii():
            ulabel = idna.ulabel(label)  # an A-label must decode to a valid name
            if idna.alabel(ulabel).decode("ascii") != label:
                raise idna.IDNAError("not the canonical A-label")
            ascii_label = label
        else:
            ulabel = label
            ascii_label = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna") from None
    if not _LABEL.fullmatch(ascii_label):
        raise _refuse(f"{raw!r} is not a valid international domain name.", "domain_idna")
    _check_single_script(ulabel, raw)
    return ascii_label


def validate_username(value: object) -> str:
    """A hosting account's Linux user name, made by the engine (it also prefixes the
    account's databases): lower-case letters and digits, 3-32 long."""
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise _refuse(f"{value!r} is not a valid account name.", "username")
    return value


def validate_db_name(value: object, *, account: str | None = None) -> str:
    """A MariaDB database or user name.

    Without ``account``: a whole name (lower-case letters, digits and underscores). With
    ``account``: a customer's name, given with or without the account's prefix, returned as
    ``<account>_<name>`` (so one account never reaches another's databases).
    """
    if account is None:
        if not isinstance(value, str) or not _DB_NAME.fullmatch(value):
            raise _refuse(f"{value!r} is not a valid database name.", "db_name")
        return value
    account = validate_username(account)
    if not isinstance(value, str) or any(ord(c) < 32 for c in value):
        raise _refuse("The database name must be one line of text.", "db_name")
    suffix = value.strip().lower()
    if suffix.startswith(account + "_"):
        suffix = suffix[len(account) + 1 :]
    longest = min(32, DB_NAME_MAX - len(account) - 1)
    if not _DB_SUFFIX.fullmatch(suffix) or len(suffix) > longest:
        raise _refuse(
            f"{value!r} is not a valid database name: use up to {longest} lower-case letters, "
            "digits and underscores.",
            "db_name",
        )
    return f"{account}_{suffix}"


def validate_local_part(value: object) -> str:
    """The part of a mailbox address before the ``@``, in lower case."""
    if not isinstance(value, str) or any(ord(c) < 32 for c in value):
        raise _refuse("The mailbox name must be one line of text.", "mailbox")
    local = value.strip().lower()
    if not _LOCAL_PART.fullmatch(local) or ".." in local:
        raise _refuse(
            f"{value!r} is not a valid mailbox name: use letters, digits, dots, hyphens, "
            "underscores and plus signs.",
            "mailbox",
        )
    return local


def validate_email(value: object) -> str:
    """A full e-mail address (a mailbox or a forwarding target), returned in lower case with
    its domain in ASCII (``domain_to_ascii``)."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise _refuse(f"{value!r} is not an e-mail address.", "email")
    local, domain = value.strip().rsplit("@", 1)
    try:
        ascii_domain = domain_to_ascii(domain)
    except ProvisioningRefused as exc:
        raise _refuse(exc.messages[0], "domain") from None
    return f"{validate_local_part(local)}@{ascii_domain}"


def validate_ip(value: object, *, version: int | None = None) -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _refuse(f"{value!r} is not an IP address.", "ip") from None
    if version is not None and address.version != version:
        raise _refuse(f"{value!r} is not an IPv{version} address.", "ip")
    return str(address)


def validate_password(value: object, *, min_length: int = 10) -> str:
    """A password we store or hand to a node service: long enough, one line, printable."""
    if not isinstance(value, str) or len(value) < min_length:
        raise _refuse(f"The password must have at least {min_length} characters.", "password")
    if len(value) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _refuse("The password cannot contain control characters or line breaks.", "password")
    return value


# Mail: the same limits the node agent applies.
MAX_QUOTA_MB = 1024 * 1024
MAX_FORWARD_TARGETS = 20


def validate_quota(quota_mb: object) -> int:
    """A mailbox quota in MB."""
    if (
        not isinstance(quota_mb, int)
        or isinstance(quota_mb, bool)
        or not 1 <= quota_mb <= MAX_QUOTA_MB
    ):
        raise _refuse(f"A mailbox quota must be between 1 and {MAX_QUOTA_MB} MB.", "mail_quota")
    return quota_mb


def validate_forward_targets(targets: object) -> list[str]:
    """A forwarder's targets: valid addresses, duplicates dropped, between 1 and the maximum."""
    if not isinstance(targets, list):
        raise _refuse("A forwarder's targets must be a list of addresses.", "forward")
    dests = list(dict.fromkeys(validate_email(t) for t in targets))
    if not dests:
        raise _refuse("A forwarder needs at least one target address.", "forward")
    if len(dests) > MAX_FORWARD_TARGETS:
        raise _refuse(f"A forwarder can have at most {MAX_FORWARD_TARGETS} targets.", "forward")
    return dests


def check_limit(*, what: str, used: int, allowed: int) -> None:
    """Refuse one more ``what`` when ``used`` already reaches ``allowed`` (the plan's limit).

    The message names the limit so the customer knows what to change.
    """
    if used >= allowed:
        raise _refuse(f"Your plan allows {allowed} {what}; you already have {used}.", "limit")


def validate_node_name(value: object) -> str:
    if not isinstance(value, str) or not _NODE_NAME.fullmatch(value):
        raise _refuse(
            f"{value!r} is not a valid node name: use lower-case letters, digits, dots, hyphens.",
            "node_name",
        )
    return value


def validate_host(value: object) -> str:
    """An SSH address: a host name or an IPv4/IPv6 address (never passed to a shell)."""
    if not isinstance(value, str) or not _HOST.fullmatch(value):
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


# Cron jobs: the schedule's five fields (minute, hour, day of month, month, day of week) as
# numbers, "*", ranges "a-b", lists "a,b" and steps "/n", or one of the macros below.
_CRON_FIELD = re.compile(r"(?:\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/[0-9]{1,2})?")
CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
CRON_COMMAND_MAX = 1000
_CRON_COMMAND = re.compile(r"[\x20-\x7e]+")


def validate_cron_schedule(value: object) -> str:
    """A cron job's schedule, returned with single spaces (the node agent converts it to a
    systemd calendar or writes it into the account's crontab; it checks it again)."""
    if not isinstance(value, str):
        raise _refuse("The schedule must be text.", "schedule")
    text = " ".join(value.split())
    if text in CRON_MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != len(_CRON_FIELDS):
        raise _refuse(
            "A schedule has five fields: minute, hour, day of month, month, day of week "
            "(e.g. */15 * * * *), or is @hourly, @daily, @weekly, @monthly or @yearly.",
            "schedule",
        )
    for field, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for part in field.split(","):
            if not _CRON_FIELD.fullmatch(part):
                raise _refuse(f"{field!r} is not a valid {name} field.", "schedule")
            base, _, step = part.partition("/")
            if base != "*":
                numbers = [int(n) for n in base.split("-")]
                if any(not low <= n <= high for n in numbers) or numbers != sorted(numbers):
                    raise _refuse(
                        f"The {name} field {field!r} is out of range ({low}-{high}).", "schedule"
                    )
            if step and int(step) == 0:
                raise _refuse(f"The {name} field {field!r} has a step of 0.", "schedule")
    return text


def validate_cron_command(value: object) -> str:
    """A cron job's command: one line of printable ASCII, at most 1000 characters."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse("Enter the command to run.", "command")
    value = value.strip()
    if len(value) > CRON_COMMAND_MAX:
        raise _refuse(f"The command is longer than {CRON_COMMAND_MAX} characters.", "command")
    if not _CRON_COMMAND.fullmatch(value):
        raise _refuse(
            "The command must be one line of plain ASCII characters (no line breaks, tabs or "
            "accented letters).",
            "command",
        )
    return value
