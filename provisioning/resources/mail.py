"""Mail domains, mailboxes, forwarders, catch-alls, auto-replies, DKIM keys and sending limits
on a node's Postfix, Dovecot and OpenDKIM.

The node's side (the plain files under ``/etc/hostwright/mail``, see
``deploy/node/parts/80-mail.sh``) is edited only by the node agent's ``mail.*`` actions
(``deploy/node/agent/hwagent/mail.py``); this module holds what the panel computes before it
sends them: password hashes, auto-reply Sieve text, DKIM, SPF and DMARC records.

Passwords never reach the node: the worker hashes them (bcrypt, Dovecot's ``BLF-CRYPT``) and
only the hash travels, as a secret argument so a recorded action does not show it either.
"""

from __future__ import annotations

import re

import bcrypt

from provisioning.errors import ProvisioningRefused
from provisioning.validators import (
    domain_to_ascii,
    validate_ip,
    validate_local_part,
    validate_password,
)

MAIL_ETC = "/etc/hostwright/mail"
VHOSTS = "/var/mail/vhosts"
DKIM_DIR = f"{MAIL_ETC}/dkim"
CERTS_DIR = "/etc/hostwright/certs"
POLICY = "/usr/local/lib/hostwright/mail-sending.py"
MAX_SEND_PER_HOUR = 1_000_000
MAX_REPLY_SUBJECT = 200
MAX_REPLY_BODY = 4000
SELECTOR_RE = re.compile(r"[a-z][a-z0-9]{0,62}")
ACCOUNT_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# Mail clients reach the node under this name (the node's own certificate is made for it).
SUBMISSION_PORTS = {"submission": 587, "submissions": 465}


# Shell helpers every mail script starts with, run under one lock so two operations never
# interleave their edits. ``drop_key FILE KEY [SEP]`` rewrites FILE without the lines whose
# first field is KEY; ``drop_suffix FILE SUFFIX [SEP]`` without those whose first field ends in
# SUFFIX. Both keep the file's owner and mode and replace it in one rename.
def hash_password(password: str) -> str:
    """A Dovecot password-scheme string for ``password`` (bcrypt)."""
    password = validate_password(password)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return "{BLF-CRYPT}" + hashed


def mailbox_address(*, local_part: str, domain: str) -> str:
    return f"{validate_local_part(local_part)}@{domain_to_ascii(domain)}"


def _check_hash(password_hash: str) -> str:
    if not password_hash.startswith("{BLF-CRYPT}$2") or any(c in password_hash for c in ":\n\r \t"):
        raise ProvisioningRefused("Unusable password hash.", code="password_hash")
    return password_hash


def validate_username(account: str) -> str:
    if not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account):
        raise ProvisioningRefused("Unusable account name.", code="account")
    return account


def _sieve_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reply_text(value: object, *, limit: int, multiline: bool, what: str) -> str:
    if not isinstance(value, str):
        raise ProvisioningRefused(f"The auto-reply {what} must be text.", code="autoreply")
    text = value.replace("\r\n", "\n").strip()
    allowed = "\n\t" if multiline else ""
    if not text or len(text) > limit:
        raise ProvisioningRefused(
            f"The auto-reply {what} must have between 1 and {limit} characters.", code="autoreply"
        )
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text):
        raise ProvisioningRefused(
            f"The auto-reply {what} has characters that cannot be sent.", code="autoreply"
        )
    return text


def autoreply_script_text(*, subject: str, body: str, days: int = 1) -> str:
    """The Sieve script of an auto-reply (vacation): at most one reply per sender per ``days``."""
    subject = _reply_text(subject, limit=MAX_REPLY_SUBJECT, multiline=False, what="subject")
    body = _reply_text(body, limit=MAX_REPLY_BODY, multiline=True, what="text")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 30:
        raise ProvisioningRefused(
            "Reply again to the same sender after 1 to 30 days.", code="autoreply"
        )
    return (
        "# Managed by Hostwright: the mailbox's auto-reply.\n"
        'require ["vacation"];\n'
        f"vacation :days {days} :subject {_sieve_string(subject)} {_sieve_string(body)};\n"
    )


def validate_selector(selector: object) -> str:
    if not isinstance(selector, str) or not SELECTOR_RE.fullmatch(selector):
        raise ProvisioningRefused("Unusable DKIM selector.", code="dkim")
    return selector


def dkim_record(*, selector: str, public_key: str) -> tuple[str, str]:
    """The DNS name (relative to the zone) and TXT text publishing a DKIM public key."""
    sel = validate_selector(selector)
    key = public_key.strip()
    if not re.fullmatch(r"[A-Za-z0-9+/]{100,1000}={0,2}", key):
        raise ProvisioningRefused("The node returned an unusable DKIM public key.", code="dkim")
    return f"{sel}._domainkey", f"v=DKIM1; k=rsa; p={key}"


def spf_text(addresses: list[str]) -> str:
    """SPF: the domain's mail leaves only from its node's addresses (and its MX)."""
    parts = ["v=spf1", "mx"]
    for address in addresses:
        ip = validate_ip(address)
        parts.append(f"ip{6 if ':' in ip else 4}:{ip}")
    return " ".join([*parts, "-all"])


DMARC_POLICIES = ("none", "quarantine", "reject")


def dmarc_text(*, domain: str, policy: str = "none") -> str:
    """DMARC: the policy chosen for the domain, aggregate reports to its postmaster."""
    name = domain_to_ascii(domain)
    if policy not in DMARC_POLICIES:
        raise ProvisioningRefused(
            f"The DMARC policy must be one of {', '.join(DMARC_POLICIES)}.", code="dmarc"
        )
    return f"v=DMARC1; p={policy}; rua=mailto:postmaster@{name}; adkim=r; aspf=r"
