"""SFTP for an account: chrooted in its own home (``deploy/node/parts/85-sftp.sh``).

Membership of the group ``hwsftp`` lets the account's user into the SFTP daemon; its public
keys live in ``/etc/hostwright/sftp/keys/<user>`` (root's folder); its password arrives as a
bcrypt hash made by the panel and is set with ``chpasswd -e`` from stdin (never on a command
line). The chroot is the home itself, which must be root's: ``enable`` repairs the home's
layout first (``users.home_layout``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

from hwagent import system, users, validate
from hwagent.errors import AgentError
from hwagent.registry import action

KEYS_DIR = "/etc/hostwright/sftp/keys"
GROUP = "hwsftp"
MAX_KEYS = 10
_HASH = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) ([A-Za-z0-9+/]+={0,3})"
    r"(?: [A-Za-z0-9@._+-]{1,100})?"
)


def public_key(value: str) -> str:
    """An OpenSSH public key line whose blob is of the type it names."""
    line = value.strip()
    match = _KEY.fullmatch(line)
    if not match:
        raise AgentError("invalid", "that is not an SSH public key")
    try:
        blob = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise AgentError("invalid", "that SSH public key is damaged") from None
    kind = match.group(1).encode()
    if blob[4 : 4 + len(kind)] != kind:
        raise AgentError("invalid", "that SSH public key is damaged")
    return line


@action("sftp.enable")
def enable(
    *, user: str, owner: str, password_hash: str = "", public_keys: list[str] | None = None
) -> dict[str, Any]:
    """Let the account in over SFTP with a password (bcrypt hash) and/or public keys (the
    key list replaces the previous one). Checks the user and its owner first."""
    user = validate.linux_user(user)
    owner = users.owner_tag(owner)
    if password_hash and not _HASH.fullmatch(password_hash):
        raise AgentError("invalid", "unusable password hash")
    keys = [public_key(k) for k in public_keys or []]
    if len(keys) > MAX_KEYS:
        raise AgentError("invalid", f"at most {MAX_KEYS} keys per account")
    if not users.check_owner(user, owner):
        raise AgentError("not_found", f"there is no account {user} on this node")
    changed = users.home_layout(user)
    changed |= users.set_membership(user, GROUP, True)
    if password_hash:
        system.run(
            ["chpasswd", "-e"],
            input=f"{user}:{password_hash}\n".encode(),
            what="setting the password",
        )
        changed = True
    os.makedirs(KEYS_DIR, mode=0o755, exist_ok=True)
    changed |= system.replace_file(f"{KEYS_DIR}/{user}", "".join(k + "\n" for k in keys))
    return {"changed": changed}


@action("sftp.disable")
def disable(*, user: str) -> dict[str, Any]:
    """Shut the account out of SFTP: out of the group, keys gone, password locked (a no-op for
    an account that was not let in, or is gone)."""
    user = validate.linux_user(user)
    changed = system.remove_file(f"{KEYS_DIR}/{user}")
    try:
        users.safefs.account(user)
    except AgentError:
        return {"changed": changed}
    changed |= users.set_membership(user, GROUP, False)
    system.run(["usermod", "-p", "!", user], what="locking the password")
    return {"changed": True}
