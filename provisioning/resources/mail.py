"""Mail domains, mailboxes, forwarders, catch-alls, auto-replies, DKIM keys and sending limits
on a node's Postfix, Dovecot and OpenDKIM.

The node keeps the mail data in plain files under ``/etc/hostwright/mail`` (see
``deploy/node/parts/80-mail.sh`` for their formats). Each function here returns a
``NodeScript`` that edits those files under a lock, one line per key, so that running it twice
leaves one entry, rebuilds the two derived tables (who may send as which domain, and every
mailbox as an alias of itself so a catch-all never swallows it) and then tells Postfix to
re-read its tables (Dovecot re-reads its passwd-file by itself).

Passwords never reach the node: the worker hashes them (bcrypt, Dovecot's ``BLF-CRYPT``) and
only the hash travels, listed in ``secrets`` so a recorded script does not show it either.
"""

from __future__ import annotations

import re
import shlex

import bcrypt

from provisioning.resources.errors import ResourceRefused
from provisioning.resources.scripts import NodeScript
from provisioning.resources.validation import (
    validate_domain,
    validate_email,
    validate_forward_targets,
    validate_ip,
    validate_local_part,
    validate_password,
    validate_quota,
)

MAIL_ETC = "/etc/hostwright/mail"
VHOSTS = "/var/mail/vhosts"
DKIM_DIR = f"{MAIL_ETC}/dkim"
CERTS_DIR = "/etc/hostwright/certs"
POLICY = "/usr/local/lib/hostwright/mail-policy.py"
MAX_SEND_PER_HOUR = 1_000_000
MAX_REPLY_SUBJECT = 200
MAX_REPLY_BODY = 4000
SELECTOR_RE = re.compile(r"^[a-z][a-z0-9]{0,62}$")
ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Mail clients reach the node under this name (the node's own certificate is made for it).
SUBMISSION_PORTS = {"submission": 587, "submissions": 465}

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
replace_file() {{
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file"
}}
# Derived tables: every mailbox is an alias of itself (a catch-all only takes what no mailbox or
# forwarder takes), and a domain may be used as sender by the logins of the account owning it.
rebuild() {{
  awk '{{ print $1, $1 }}' {MAIL_ETC}/mailboxes | replace_file {MAIL_ETC}/selfaliases
  awk 'FILENAME == ARGV[1] {{ acct[$1] = $2; next }}
       FILENAME == ARGV[2] {{ dom[$1] = 1; next }}
       {{ n = split($1, p, "@"); d = p[n]; a = (d in acct) ? acct[d] : "@" d
         logins[a] = logins[a] (logins[a] == "" ? "" : ",") $1 }}
       END {{ for (d in dom) {{ a = (d in acct) ? acct[d] : "@" d
                              if (logins[a] != "") print "@" d, logins[a] }} }}' \
    {MAIL_ETC}/limits {MAIL_ETC}/domains {MAIL_ETC}/mailboxes | replace_file {MAIL_ETC}/senders
}}
"""
# fd 9 holds the lock: a Postfix master started here must not inherit it, or it would hold
# the lock for as long as it runs and every later mail change would wait forever.
_RELOAD = "rebuild\n{ postfix reload || postfix start; } >/dev/null 2>&1 9>&-\n"
_DKIM_RELOAD = (
    "if [ -d /run/systemd/system ]; then systemctl reload opendkim 9>&-;"
    ' elif [ -s /run/opendkim/opendkim.pid ]; then kill -USR1 "$(cat /run/opendkim/opendkim.pid)";'
    " else opendkim -x /etc/opendkim.conf 9>&-; fi\n"
)
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


def _per_hour(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SEND_PER_HOUR:
        raise ResourceRefused(
            f"The {what} sending limit must be between 1 and {MAX_SEND_PER_HOUR}"
            " messages per hour.",
            code="mail_limit",
        )
    return value


def validate_account(account: str) -> str:
    if not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account):
        raise ResourceRefused("Unusable account name.", code="account")
    return account


def _limits_lines(domain: str, account: str, account_hour: int, mailbox_hour: int) -> str:
    d = shlex.quote(domain)
    line = f"{domain} {validate_account(account)} {_per_hour(account_hour, 'account')}"
    line += f" {_per_hour(mailbox_hour, 'mailbox')}"
    return (
        f"drop_key {MAIL_ETC}/limits {d}\nprintf '%s\\n' {shlex.quote(line)} >> {MAIL_ETC}/limits\n"
    )


def mail_domain_add_script(
    *,
    domain: str,
    account: str | None = None,
    account_hour: int = 500,
    mailbox_hour: int = 100,
) -> NodeScript:
    """Accept mail for ``domain`` (idempotent).

    With ``account`` the domain belongs to that hosting account: the account's mailboxes may
    send as its addresses, and it sends at most ``account_hour`` messages per hour in all and
    ``mailbox_hour`` per mailbox. Without it the domain stands alone (its own mailboxes only,
    no limit).
    """
    name = validate_domain(domain)
    d = shlex.quote(name)
    limits = _limits_lines(name, account, account_hour, mailbox_hour) if account else ""
    return NodeScript(
        _PRELUDE
        + f"drop_key {MAIL_ETC}/domains {d}\n"
        + f"printf '%s OK\\n' {d} >> {MAIL_ETC}/domains\n"
        + limits
        + f"install -d -o vmail -g vmail -m 0770 {VHOSTS}/{d}\n"
        + _RELOAD
    )


def mail_limits_script(
    *, domain: str, account: str, account_hour: int, mailbox_hour: int
) -> NodeScript:
    """Set the hourly sending limits of a hosted domain's account (after a plan change)."""
    name = validate_domain(domain)
    return NodeScript(
        _PRELUDE
        + f"grep -qx {shlex.quote(name + ' OK')} {MAIL_ETC}/domains"
        + f" || {{ echo 'mail domain {name} is not set up on this node' >&2; exit 3; }}\n"
        + _limits_lines(name, account, account_hour, mailbox_hour)
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
        f"drop_key {MAIL_ETC}/limits {d}",
        f"drop_key {MAIL_ETC}/catchall {shlex.quote('@' + name)}",
        f"drop_suffix {DKIM_DIR}/keytable {shlex.quote('._domainkey.' + name)}",
        f"drop_key {DKIM_DIR}/signingtable {shlex.quote('*@' + name)}",
        f"rm -rf -- {DKIM_DIR}/{d}",
    ]
    if purge:
        lines.append(f"rm -rf -- {VHOSTS}/{d}")
    return NodeScript(
        _PRELUDE + _PASSWD_BEFORE + "\n".join(lines) + "\n" + _PASSWD_AFTER + _RELOAD + _DKIM_RELOAD
    )


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
    quota = validate_quota(quota_mb)
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
    dests = validate_forward_targets(targets)
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


def _require_domain(name: str) -> str:
    return (
        f"grep -qx {shlex.quote(name + ' OK')} {MAIL_ETC}/domains"
        f" || {{ echo 'mail domain {name} is not set up on this node' >&2; exit 3; }}\n"
    )


def mailbox_quota_script(*, address: str, quota_mb: int) -> NodeScript:
    """Change a mailbox's quota, keeping its password; exit 3 if it does not exist."""
    address = validate_email(address)
    quota = validate_quota(quota_mb)
    a = shlex.quote(address)
    return NodeScript(
        _PRELUDE
        + _PASSWD_BEFORE
        + f"line=$(awk -F: -v k={a} '$1 == k' {MAIL_ETC}/passwd)\n"
        + f"[ -n \"$line\" ] || {{ echo 'no such mailbox: {address}' >&2; exit 3; }}\n"
        + 'new=$(printf "%s" "$line" | sed -E'
        + f" 's/userdb_quota_rule=[*]:storage=[0-9]+M/userdb_quota_rule=*:storage={quota}M/')\n"
        + f"drop_key {MAIL_ETC}/passwd {a} :\n"
        + f"printf '%s\\n' \"$new\" >> {MAIL_ETC}/passwd\n"
        + _PASSWD_AFTER
    )


def catchall_set_script(*, domain: str, target: str) -> NodeScript:
    """Deliver mail for any address of ``domain`` no mailbox or forwarder takes to ``target``."""
    name = validate_domain(domain)
    dest = validate_email(target)
    key = shlex.quote("@" + name)
    return NodeScript(
        _PRELUDE
        + _require_domain(name)
        + f"drop_key {MAIL_ETC}/catchall {key}\n"
        + f"printf '%s %s\\n' {key} {shlex.quote(dest)} >> {MAIL_ETC}/catchall\n"
        + _RELOAD
    )


def catchall_delete_script(*, domain: str) -> NodeScript:
    key = shlex.quote("@" + validate_domain(domain))
    return NodeScript(_PRELUDE + f"drop_key {MAIL_ETC}/catchall {key}\n" + _RELOAD)


def _sieve_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reply_text(value: object, *, limit: int, multiline: bool, what: str) -> str:
    if not isinstance(value, str):
        raise ResourceRefused(f"The auto-reply {what} must be text.", code="autoreply")
    text = value.replace("\r\n", "\n").strip()
    allowed = "\n\t" if multiline else ""
    if not text or len(text) > limit:
        raise ResourceRefused(
            f"The auto-reply {what} must have between 1 and {limit} characters.", code="autoreply"
        )
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text):
        raise ResourceRefused(
            f"The auto-reply {what} has characters that cannot be sent.", code="autoreply"
        )
    return text


def autoreply_script_text(*, subject: str, body: str, days: int = 1) -> str:
    """The Sieve script of an auto-reply (vacation): at most one reply per sender per ``days``."""
    subject = _reply_text(subject, limit=MAX_REPLY_SUBJECT, multiline=False, what="subject")
    body = _reply_text(body, limit=MAX_REPLY_BODY, multiline=True, what="text")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 30:
        raise ResourceRefused(
            "Reply again to the same sender after 1 to 30 days.", code="autoreply"
        )
    return (
        "# Managed by Hostwright: the mailbox's auto-reply.\n"
        'require ["vacation"];\n'
        f"vacation :days {days} :subject {_sieve_string(subject)} {_sieve_string(body)};\n"
    )


def autoreply_set_script(*, address: str, subject: str, body: str, days: int = 1) -> NodeScript:
    """Answer mail to a mailbox with a fixed text (Sieve vacation); exit 3 without the mailbox."""
    address = validate_email(address)
    local, name = address.split("@")
    sieve = autoreply_script_text(subject=subject, body=body, days=days)
    home = f"{VHOSTS}/{shlex.quote(name)}/{shlex.quote(local)}"
    return NodeScript(
        _PRELUDE
        + f"awk -F: -v k={shlex.quote(address)} '$1 == k {{ found = 1 }} END {{ exit !found }}'"
        + f" {MAIL_ETC}/passwd || {{ echo 'no such mailbox: {address}' >&2; exit 3; }}\n"
        + f"install -d -o vmail -g vmail -m 0770 {VHOSTS}/{shlex.quote(name)} {home}\n"
        + "tmp=$(mktemp)\n"
        + f"printf '%s' {shlex.quote(sieve)} > \"$tmp\"\n"
        + f'install -o vmail -g vmail -m 0600 "$tmp" {home}/.dovecot.sieve\n'
        + 'rm -f "$tmp"\n'
        + f"rm -f {home}/.dovecot.svbin\n"
    )


def autoreply_delete_script(*, address: str) -> NodeScript:
    address = validate_email(address)
    local, name = address.split("@")
    home = f"{VHOSTS}/{shlex.quote(name)}/{shlex.quote(local)}"
    return NodeScript(_PRELUDE + f"rm -f {home}/.dovecot.sieve {home}/.dovecot.svbin\n")


def validate_selector(selector: object) -> str:
    if not isinstance(selector, str) or not SELECTOR_RE.fullmatch(selector):
        raise ResourceRefused("Unusable DKIM selector.", code="dkim")
    return selector


def dkim_key_script(*, domain: str, selector: str) -> NodeScript:
    """Make the domain's DKIM key for ``selector`` on the node (kept if it exists) and print its
    public key (base64 DER, the ``p=`` of the DNS record). Nothing signs with it yet."""
    name = validate_domain(domain)
    sel = validate_selector(selector)
    directory = f"{DKIM_DIR}/{shlex.quote(name)}"
    key = f"{directory}/{sel}.private"
    return NodeScript(
        _PRELUDE
        + _require_domain(name)
        + f"install -d -o opendkim -g opendkim -m 0750 {directory}\n"
        + f"if [ ! -s {key} ]; then\n"
        + f"  ( umask 077; openssl genrsa -out {key}.tmp 2048 2>/dev/null )\n"
        + f"  chown opendkim:opendkim {key}.tmp\n"
        + f"  mv -f {key}.tmp {key}\n"
        + "fi\n"
        + f"openssl rsa -in {key} -pubout -outform DER 2>/dev/null | base64 -w0\n"
    )


def dkim_activate_script(*, domain: str, selector: str) -> NodeScript:
    """Sign the domain's mail with the key of ``selector`` from now on; older keys are deleted."""
    name = validate_domain(domain)
    sel = validate_selector(selector)
    directory = f"{DKIM_DIR}/{shlex.quote(name)}"
    record = f"{sel}._domainkey.{name}"
    key_line = f"{record} {name}:{sel}:{DKIM_DIR}/{name}/{sel}.private"
    return NodeScript(
        _PRELUDE
        + _require_domain(name)
        + f"[ -s {directory}/{sel}.private ]"
        + f" || {{ echo 'no DKIM key {sel} for {name} on this node' >&2; exit 3; }}\n"
        + f"drop_suffix {DKIM_DIR}/keytable {shlex.quote('._domainkey.' + name)}\n"
        + f"printf '%s\\n' {shlex.quote(key_line)} >> {DKIM_DIR}/keytable\n"
        + f"drop_key {DKIM_DIR}/signingtable {shlex.quote('*@' + name)}\n"
        + f"printf '%s %s\\n' {shlex.quote('*@' + name)} {record} >> {DKIM_DIR}/signingtable\n"
        + f"find {directory} -maxdepth 1 -name '*.private' ! -name {sel}.private -delete\n"
        + _DKIM_RELOAD
    )


def dkim_record(*, selector: str, public_key: str) -> tuple[str, str]:
    """The DNS name (relative to the zone) and TXT text publishing a DKIM public key."""
    sel = validate_selector(selector)
    key = public_key.strip()
    if not re.fullmatch(r"[A-Za-z0-9+/]{100,1000}={0,2}", key):
        raise ResourceRefused("The node returned an unusable DKIM public key.", code="dkim")
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
    name = validate_domain(domain)
    if policy not in DMARC_POLICIES:
        raise ResourceRefused(
            f"The DMARC policy must be one of {', '.join(DMARC_POLICIES)}.", code="dmarc"
        )
    return f"v=DMARC1; p={policy}; rua=mailto:postmaster@{name}; adkim=r; aspf=r"


def mail_sni_refresh_script() -> NodeScript:
    """Offer each hosted domain's own certificate (if it has one) by SNI on SMTP, IMAP and POP3.

    Run after a certificate is installed or renewed: Postfix's map holds the certificate itself
    (``postmap -F``), so it must be rebuilt whenever the files change. Names come from each
    certificate's subject alternative names.
    """
    script = (
        f"[ -s {MAIL_ETC}/domains ] || exit 0  # no mail on this node\n"
        + _PRELUDE
        + f"""sni=$(mktemp) dov=$(mktemp)
while read -r domain _; do
  dir={CERTS_DIR}/$domain
  [ -s "$dir/fullchain.pem" ] && [ -s "$dir/privkey.pem" ] || continue
  openssl x509 -in "$dir/fullchain.pem" -noout -checkend 0 >/dev/null 2>&1 || continue
  for host in $(openssl x509 -in "$dir/fullchain.pem" -noout -ext subjectAltName 2>/dev/null \\
      | tr ',' '\\n' | sed -n 's/^ *DNS://p'); do
    case $host in *[!a-z0-9.-]*) continue ;; esac
    printf '%s %s %s\\n' "$host" "$dir/privkey.pem" "$dir/fullchain.pem" >> "$sni"
    printf 'local_name %s {{\\n  ssl_cert = <%s\\n  ssl_key = <%s\\n}}\\n' \\
      "$host" "$dir/fullchain.pem" "$dir/privkey.pem" >> "$dov"
  done
done < {MAIL_ETC}/domains
replace_file {MAIL_ETC}/sni < "$sni"
postmap -F hash:{MAIL_ETC}/sni
if ! cmp -s "$dov" {MAIL_ETC}/dovecot-sni.conf; then
  replace_file {MAIL_ETC}/dovecot-sni.conf < "$dov"
  doveadm reload 9>&-
fi
rm -f "$sni" "$dov"
"""
        + _RELOAD
    )
    return NodeScript(script)
