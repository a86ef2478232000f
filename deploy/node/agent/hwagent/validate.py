"""One validator per kind of name the agent accepts.

Each returns the normalized value or raises ``AgentError("invalid", ...)`` with a message a
customer can read. The panel validates the same values before sending them; the agent checks
them again because the agent is the boundary. Patterns are allow-lists: a value that passes
holds no whitespace, no shell or SQL metacharacter, no path separator and no ``..``.
"""

from __future__ import annotations

import re
import unicodedata

from hwagent.errors import AgentError

_LINUX_USER = re.compile(r"^[a-z][a-z0-9]{2,31}$")
_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")
_DB_USER = re.compile(r"^[a-z][a-z0-9_]{2,79}$")
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MODE = re.compile(r"^0?[0-7]{3}$")
_CRON_FIELD = re.compile(r"^(?:\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/[0-9]{1,2})?$")
_CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot")
# (lowest, highest) of minute, hour, day of month, month, day of week.
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))

MAX_PATH = 1024
MAX_NAME = 255
# Scripts that are written together in the same languages, so a label mixing them is fine.
_SCRIPT_FAMILIES = ({"CJK", "HIRAGANA", "KATAKANA"}, {"CJK", "HANGUL"})


def _refuse(message: str) -> AgentError:
    return AgentError("invalid", message)


def linux_user(value: object) -> str:
    """An account's Linux user name as the panel makes them: 3-32 lower-case letters, digits."""
    if not isinstance(value, str) or not _LINUX_USER.fullmatch(value):
        raise _refuse(f"{str(value)[:80]!r} is not a valid account name")
    return value


def db_name(value: object) -> str:
    """A MariaDB database name: lower-case letters, digits, underscores; 3-64 long."""
    if not isinstance(value, str) or not _DB_NAME.fullmatch(value):
        raise _refuse(f"{str(value)[:80]!r} is not a valid database name")
    return value


def db_user(value: object) -> str:
    """A MariaDB user name (without the host): like a database name, up to 80 long."""
    if not isinstance(value, str) or not _DB_USER.fullmatch(value):
        raise _refuse(f"{str(value)[:80]!r} is not a valid database user name")
    return value


def owned_by(name: str, account: str) -> str:
    """A database, database user or other per-account name: the account's own or prefixed
    with it and an underscore."""
    if name != account and not name.startswith(account + "_"):
        raise _refuse(f"{name!r} does not belong to the account {account}")
    return name


def local_part(value: object) -> str:
    """A mailbox's local part (before the @), lower case."""
    if not isinstance(value, str) or not _LOCAL_PART.fullmatch(value) or ".." in value:
        raise _refuse(f"{str(value)[:80]!r} is not a valid mailbox name")
    return value


def _script(char: str) -> str:
    """The script of a letter from its Unicode name ('CYRILLIC SMALL LETTER A' -> CYRILLIC)."""
    name = unicodedata.name(char, "")
    if name.startswith("CJK"):
        return "CJK"
    return name.split(" ", 1)[0]


def _mixed_scripts(label: str) -> bool:
    scripts = {_script(c) for c in label if c.isalpha()}
    if len(scripts) <= 1:
        return False
    return not any(scripts <= family for family in _SCRIPT_FAMILIES)


def domain(value: object) -> str:
    """A host name, returned in lower-case ASCII (A-label) form without a trailing dot.

    International names go through UTS-46 mapping and IDNA 2008 (the ``idna`` package, from
    Debian's python3-idna); a label mixing scripts (Latin with Cyrillic, say: a look-alike)
    is refused. A leading ``www.`` is the panel's to add, so it is refused too.
    """
    import idna

    if not isinstance(value, str) or not value or len(value) > 300:
        raise _refuse("the domain must be text of at most 253 characters")
    raw = value.rstrip(".")
    if _CONTROL.search(raw) or any(c.isspace() for c in raw) or not raw:
        raise _refuse("a domain name cannot contain spaces or control characters")
    try:
        mapped = idna.uts46_remap(raw, std3_rules=True, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _refuse(f"{raw[:80]!r} is not a valid domain name") from None
    labels = []
    for label in mapped.split("."):
        if not label:
            raise _refuse("a domain name cannot contain empty labels")
        if label.isascii() and not label.startswith("xn--"):
            ascii_label = label
        else:
            try:
                unicode_label = idna.ulabel(label) if label.isascii() else label
                if _mixed_scripts(unicode_label):
                    raise _refuse(f"{raw[:80]!r} mixes scripts in one label")
                ascii_label = idna.alabel(unicode_label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                raise _refuse(f"{raw[:80]!r} is not a valid international domain name") from None
        if not _LABEL.fullmatch(ascii_label):
            raise _refuse(f"{raw[:80]!r} is not a valid domain name")
        labels.append(ascii_label)
    name = ".".join(labels)
    if len(name) > 253 or len(labels) < 2:
        raise _refuse(f"{raw[:80]!r} is not a full domain name")
    if not _TLD.fullmatch(labels[-1]):
        raise _refuse(f"{labels[-1]!r} is not a top-level domain")
    if labels[0] == "www" and len(labels) > 2:
        raise _refuse("give the domain without www.")
    return name


def home_path(value: object, *, allow_root: bool = True) -> str:
    """A path inside an account's home, relative to it: no leading ``/``, no ``..`` or ``.``
    component, no NUL or control characters. ``""`` (or ``.``) is the home itself."""
    if not isinstance(value, str):
        raise _refuse("the path must be text")
    if len(value) > MAX_PATH or _CONTROL.search(value):
        raise _refuse("that path is too long or contains control characters")
    if value.startswith("/"):
        raise _refuse("paths are relative to the home folder")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _refuse("a path cannot contain '..'")
    if any(len(p) > MAX_NAME for p in parts):
        raise _refuse(f"a file name can have at most {MAX_NAME} characters")
    if not parts and not allow_root:
        raise _refuse("that is the home folder itself")
    return "/".join(parts)


def file_name(value: object) -> str:
    """One file or folder name (no ``/``)."""
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise _refuse("enter a file name")
    if "/" in value or len(value) > MAX_NAME or _CONTROL.search(value):
        raise _refuse("a file name cannot contain '/' or control characters")
    return value


def file_mode(value: object) -> int:
    """Permissions as three or four octal digits (no setuid, setgid or sticky bits)."""
    if not isinstance(value, str) or not _MODE.fullmatch(value):
        raise _refuse("permissions are three octal digits such as 644")
    return int(value, 8)


def cron_schedule(value: object) -> str:
    """Five cron fields (numbers, ranges, steps, ``*``) or one of the @ macros."""
    if not isinstance(value, str):
        raise _refuse("the schedule must be text")
    text = " ".join(value.split())
    if text in _CRON_MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise _refuse("a schedule has five fields: minute hour day month weekday")
    for field, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        for part in field.split(","):
            if not _CRON_FIELD.fullmatch(part):
                raise _refuse(f"{field!r} is not a schedule field")
            base = part.split("/")[0]
            if base != "*":
                numbers = [int(n) for n in base.split("-")]
                if any(not low <= n <= high for n in numbers) or numbers != sorted(numbers):
                    raise _refuse(f"{field!r} is out of range ({low}-{high})")
            if "/" in part and int(part.split("/")[1]) == 0:
                raise _refuse(f"{field!r} has a zero step")
    return text


def positive_int(value: object, *, name: str, maximum: int = 10**12) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise _refuse(f"{name} must be a whole number between 1 and {maximum}")
    return value


def one_line(value: object, *, name: str, maximum: int = 1000) -> str:
    """Printable text on one line (a comment, a description)."""
    if not isinstance(value, str) or len(value) > maximum or _CONTROL.search(value):
        raise _refuse(f"{name} must be one line of at most {maximum} characters")
    return value
