"""Chrooted SFTP for an account's Linux user (node part ``deploy/node/parts/85-sftp.sh``,
node agent actions ``sftp.enable`` and ``sftp.disable``).

The account is jailed in its own home. The password is hashed by the worker (bcrypt, which the
node's libxcrypt and PAM understand) and only the hash is sent to the node.
"""

from __future__ import annotations

import base64
import binascii
import re

import bcrypt

from provisioning.errors import ProvisioningRefused
from provisioning.validators import validate_password

MAX_KEYS = 10
_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) ([A-Za-z0-9+/]+={0,3})"
    r"(?: [A-Za-z0-9@._+-]{1,100})?"
)


def hash_password(password: str) -> str:
    """A crypt(3) hash of ``password`` for /etc/shadow (bcrypt, ``$2b$``)."""
    password = validate_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def validate_public_key(value: str) -> str:
    """An OpenSSH public key line (type, base64 blob of that type, optional comment)."""
    line = value.strip()
    match = _KEY.fullmatch(line)
    if not match:
        raise ProvisioningRefused(
            "That is not an SSH public key (ssh-ed25519 AAAA...).", code="key"
        )
    try:
        blob = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ProvisioningRefused("That SSH public key is damaged.", code="key") from None
    kind = match.group(1).encode()
    if blob[4 : 4 + len(kind)] != kind:
        raise ProvisioningRefused("That SSH public key is damaged.", code="key")
    return line
