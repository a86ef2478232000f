"""Chrooted SFTP for an account's Linux user (node part ``deploy/node/parts/85-sftp.sh``).

Membership of the group ``hwsftp`` lets an account in; its public keys are kept in
``/etc/hostwright/sftp/keys/<user>``. The password is hashed by the worker (bcrypt, which the
node's libxcrypt and PAM understand) and only the hash is sent, with ``usermod -p``.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Sequence

import bcrypt

from provisioning.resources.errors import ResourceRefused
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import validate_account, validate_password

KEYS_DIR = "/etc/hostwright/sftp/keys"
GROUP = "hwsftp"
MAX_KEYS = 10
_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) ([A-Za-z0-9+/]+={0,3})"
    r"(?: [A-Za-z0-9@._+-]{1,100})?$"
)


def hash_password(password: str) -> str:
    """A crypt(3) hash of ``password`` for /etc/shadow (bcrypt, ``$2b$``)."""
    password = validate_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def validate_public_key(value: str) -> str:
    """An OpenSSH public key line (type, base64 blob of that type, optional comment)."""
    line = value.strip()
    match = _KEY.match(line)
    if not match:
        raise ResourceRefused("That is not an SSH public key (ssh-ed25519 AAAA...).", code="key")
    try:
        blob = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ResourceRefused("That SSH public key is damaged.", code="key") from None
    kind = match.group(1).encode()
    if blob[4 : 4 + len(kind)] != kind:
        raise ResourceRefused("That SSH public key is damaged.", code="key")
    return line


def _check_hash(password_hash: str) -> str:
    if not re.fullmatch(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}", password_hash):
        raise ResourceRefused("Unusable password hash.", code="password_hash")
    return password_hash


def sftp_enable_script(
    *, account: str, password_hash: str | None = None, public_keys: Sequence[str] = ()
) -> NodeScript:
    """Let the account in over SFTP, with a password (hash) and/or public keys."""
    user = validate_account(account)
    keys = [validate_public_key(k) for k in public_keys]
    if len(keys) > MAX_KEYS:
        raise ResourceRefused(f"At most {MAX_KEYS} keys per account.", code="key")
    q = shlex.quote
    lines = [
        "set -euo pipefail",
        f"getent passwd {q(user)} >/dev/null || {{ echo 'no such account' >&2; exit 3; }}",
        f"usermod -aG {GROUP} {q(user)}",
    ]
    secrets: tuple[str, ...] = ()
    if password_hash is not None:
        pw = _check_hash(password_hash)
        lines.append(f"usermod -p {q(pw)} {q(user)}")
        secrets = (pw,)
    key_file = f"{KEYS_DIR}/{user}"
    content = "".join(k + "\n" for k in keys)
    lines += [
        f"install -d -m 0755 {KEYS_DIR}",
        f"printf '%s' {q(content)} > {q(key_file + '.tmp')}",
        f"chmod 0644 {q(key_file + '.tmp')}",
        f"mv -f {q(key_file + '.tmp')} {q(key_file)}",
    ]
    return NodeScript("\n".join(lines) + "\n", secrets=secrets)


def sftp_disable_script(*, account: str) -> NodeScript:
    """Shut the account out of SFTP (a no-op when it was not let in)."""
    user = shlex.quote(validate_account(account))
    return NodeScript(
        "set -euo pipefail\n"
        f"gpasswd -d {user} {GROUP} >/dev/null 2>&1 || true\n"
        f"rm -f {KEYS_DIR}/{user}\n"
        f"usermod -p '!' {user} 2>/dev/null || true\n"
    )
