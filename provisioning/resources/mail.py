"""Mail domains, mailboxes and forwarders on a node's Postfix and Dovecot.

The node keeps the mail data in four files under ``/etc/hostwright/mail`` (see
``deploy/node/parts/80-mail.sh`` for their formats). Each function here returns a
``NodeScript`` that edits those files under a lock, one line per key, so that running it twice
leaves one entry, and then tells Postfix to re-read its tables (Dovecot re-reads its
passwd-file by itself).

Passwords never reach the node: the worker hashes them (bcrypt, Dovecot's ``BLF-CRYPT``) and
only the hash travels, listed in ``secrets`` so a recorded script does not show it either.
"""

from __future__ import annotations

import shlex

import bcrypt

from provisioning.resources.errors import ResourceRefused
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import (
    validate_domain,
    validate_email,
    validate_local_part,
    validate_password,
)

MAIL_ETC = "/etc/hostwright/mail"
VHOSTS = "/var/mail/vhosts"
MAX_QUOTA_MB = 1024 * 1024
MAX_FORWARD_TARGETS = 20

# Shell helpers every mail script starts with, run under one lock so two operations never
# interleave their edits. ``drop_key FILE KEY [SEP]`` rewrites FILE without the lines whose
# first field is KEY; ``drop_suffix FILE SUFFIX [SEP]`` without those whose first field ends in
# SUFFIX. Both keep the file's owner and mode and replace it in one rename.
_PRELUDE = f"""set -euo pipefail
exec 9>{MAIL_ETC}/.lock
flock -w 50 9 || {{ echo "another mail change is in progress" >&2; exit 75; }}
drop_key() {{
  local file=$1 key=$2 sep=${{3:- }} tmp
  tmp=$(mktemp "$file.XXXXXX")
  awk -F"$sep" -v k="$key" '$1 != k' "$file" > "$tmp"
  chown --reference="$file" "$tmp"
  chmod --reference="$file" "$tmp"
  mv -f "$tmp" "$file"
}}
drop_suffix() {{
  local file=$1 suffix=$2 sep=${{3:- }} tmp
  tmp=$(mktemp "$file.XXXXXX")
  awk -F"$sep" -v s="$suffix" \
    'length($1) < length(s) || substr($1, length($1) - length(s) + 1) != s' "$file" > "$tmp"
  chown --reference="$file" "$tmp"
  chmod --reference="$file" "$tmp"
  mv -f "$tmp" "$file"
}}
"""
# fd 9 holds the lock: a Postfix master started here must not inherit it, or it would hold
# the lock for as long as it runs and every later mail change would wait forever.
_RELOAD = "{ postfix reload || postfix start; } >/dev/null 2>&1 9>&-\n"
# Dovecot notices a changed passwd-file by its mtime (whole seconds) and size, looking at
# most once a second, so a change takes effect within about a second. Two edits in one second
# with same-length hashes would look unchanged forever: the mtime is moved strictly forward on
# every edit.
_PASSWD_BEFORE = f"pw_mtime=$(stat -c %Y {MAIL_ETC}/passwd)\n"
_PASSWD_AFTER = (
    f'[ "$(stat -c %Y {MAIL_ETC}/passwd)" -gt "$pw_mtime" ]'
    f' || touch -d "@$((pw_mtime + 1))" {MAIL_ETC}/passwd\n'
)


def hash_password(password: str) -> str:
    """A Dovecot password-scheme string for ``password`` (bcrypt)."""
    password = validate_password(password)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return "{BLF-CRYPT}" + hashed


def mailbox_address(*, local_part: str, domain: str) -> str:
    return f"{validate_local_part(local_part)}@{validate_domain(domain)}"


def _check_hash(password_hash: str) -> str:
    if not password_hash.startswith("{BLF-CRYPT}$2") or any(c in password_hash for c in ":\n\r \t"):
        raise ResourceRefused("Unusable password hash.", code="password_hash")
    return password_hash


def _quota(quota_mb: int) -> int:
    if not isinstance(quota_mb, int) or not 1 <= quota_mb <= MAX_QUOTA_MB:
        raise ResourceRefused(
            f"A mailbox quota must be between 1 and {MAX_QUOTA_MB} MB.", code="mail_quota"
        )
    return quota_mb


def mail_domain_add_script(*, domain: str) -> NodeScript:
    """Accept mail for ``domain`` (idempotent)."""
    d = shlex.quote(validate_domain(domain))
    return NodeScript(
        _PRELUDE
        + f"drop_key {MAIL_ETC}/domains {d}\n"
        + f"printf '%s OK\\n' {d} >> {MAIL_ETC}/domains\n"
        + f"install -d -o vmail -g vmail -m 0770 {VHOSTS}/{d}\n"
        + _RELOAD
    )


def mail_domain_remove_script(*, domain: str, purge: bool = False) -> NodeScript:
    """Stop accepting mail for ``domain``: its mailboxes and forwarders go too.

    With ``purge`` the stored mail is deleted as well (termination); without it the
    Maildirs stay on disk so a mistaken removal can be undone.
    """
    name = validate_domain(domain)
    d = shlex.quote(name)
    suffix = shlex.quote("@" + name)
    lines = [
        f"drop_key {MAIL_ETC}/domains {d}",
        f"drop_suffix {MAIL_ETC}/mailboxes {suffix}",
        f"drop_suffix {MAIL_ETC}/aliases {suffix}",
        f"drop_suffix {MAIL_ETC}/passwd {suffix} :",
    ]
    if purge:
        lines.append(f"rm -rf -- {VHOSTS}/{d}")
    return NodeScript(_PRELUDE + _PASSWD_BEFORE + "\n".join(lines) + "\n" + _PASSWD_AFTER + _RELOAD)


def mailbox_create_script(
    *, local_part: str, domain: str, password_hash: str, quota_mb: int
) -> NodeScript:
    """Create (or bring up to date) a mailbox with its password hash and quota.

    The domain must have been added; the script refuses otherwise (exit 3) so a mailbox can
    never exist for a domain the node does not accept mail for.
    """
    address = mailbox_address(local_part=local_part, domain=domain)
    local, name = address.split("@")
    pw = _check_hash(password_hash)
    quota = _quota(quota_mb)
    a, d, q = shlex.quote(address), shlex.quote(name), shlex.quote
    entry = f"{address}:{pw}::::::userdb_quota_rule=*:storage={quota}M"
    script = (
        _PRELUDE
        + _PASSWD_BEFORE
        + f"grep -qx {q(name + ' OK')} {MAIL_ETC}/domains"
        + f" || {{ echo 'mail domain {name} is not set up on this node' >&2; exit 3; }}\n"
        + f"drop_key {MAIL_ETC}/mailboxes {a}\n"
        + f"printf '%s %s\\n' {a} {q(f'{name}/{local}/')} >> {MAIL_ETC}/mailboxes\n"
        + f"drop_key {MAIL_ETC}/passwd {a} :\n"
        + f"printf '%s\\n' {q(entry)} >> {MAIL_ETC}/passwd\n"
        + f"install -d -o vmail -g vmail -m 0770 {VHOSTS}/{d} {VHOSTS}/{d}/{q(local)}\n"
        + _PASSWD_AFTER
        + _RELOAD
    )
    return NodeScript(script, secrets=(pw,))


def mailbox_password_script(*, address: str, password_hash: str) -> NodeScript:
    """Replace a mailbox's password hash, keeping its quota; exit 3 if it does not exist."""
    address = validate_email(address)
    pw = _check_hash(password_hash)
    a = shlex.quote(address)
    script = (
        _PRELUDE
        + _PASSWD_BEFORE
        + f"line=$(awk -F: -v k={a} '$1 == k' {MAIL_ETC}/passwd)\n"
        + f"[ -n \"$line\" ] || {{ echo 'no such mailbox: {address}' >&2; exit 3; }}\n"
        + 'rest=$(printf "%s" "$line" | cut -d: -f3-)\n'
        + f"drop_key {MAIL_ETC}/passwd {a} :\n"
        + f"printf '%s:%s:%s\\n' {a} {shlex.quote(pw)} \"$rest\" >> {MAIL_ETC}/passwd\n"
        + _PASSWD_AFTER
    )
    return NodeScript(script, secrets=(pw,))


def mailbox_delete_script(*, address: str, purge: bool = True) -> NodeScript:
    """Delete a mailbox (and, with ``purge``, its stored mail). Deleting twice is a no-op."""
    address = validate_email(address)
    local, name = address.split("@")
    a = shlex.quote(address)
    script = (
        _PRELUDE
        + _PASSWD_BEFORE
        + f"drop_key {MAIL_ETC}/mailboxes {a}\n"
        + f"drop_key {MAIL_ETC}/passwd {a} :\n"
        + _PASSWD_AFTER
        + (f"rm -rf -- {VHOSTS}/{shlex.quote(name)}/{shlex.quote(local)}\n" if purge else "")
        + "doveadm kick "
        + a
        + " >/dev/null 2>&1 9>&- || true\n"
        + _RELOAD
    )
    return NodeScript(script)


def forwarder_set_script(*, source: str, targets: list[str]) -> NodeScript:
    """Forward mail for ``source`` (an address in a hosted domain) to ``targets``.

    Replaces any earlier forwarder for the same address. ``source`` may also be a mailbox:
    then its mail is forwarded instead of stored, unless the mailbox is one of the targets.
    """
    src = validate_email(source)
    dests = list(dict.fromkeys(validate_email(t) for t in targets))
    if not dests:
        raise ResourceRefused("A forwarder needs at least one target address.", code="forward")
    if len(dests) > MAX_FORWARD_TARGETS:
        raise ResourceRefused(
            f"A forwarder can have at most {MAX_FORWARD_TARGETS} targets.", code="forward"
        )
    name = src.split("@")[1]
    s, q = shlex.quote(src), shlex.quote
    return NodeScript(
        _PRELUDE
        + f"grep -qx {q(name + ' OK')} {MAIL_ETC}/domains"
        + f" || {{ echo 'mail domain {name} is not set up on this node' >&2; exit 3; }}\n"
        + f"drop_key {MAIL_ETC}/aliases {s}\n"
        + f"printf '%s %s\\n' {s} {q(','.join(dests))} >> {MAIL_ETC}/aliases\n"
        + _RELOAD
    )


def forwarder_delete_script(*, source: str) -> NodeScript:
    s = shlex.quote(validate_email(source))
    return NodeScript(_PRELUDE + f"drop_key {MAIL_ETC}/aliases {s}\n" + _RELOAD)
