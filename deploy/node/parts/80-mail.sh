#!/usr/bin/env bash
# Node part: Postfix (SMTP) and Dovecot (IMAP, LMTP) for virtual mail domains.
#
# The panel owns the mail data in plain files under /etc/hostwright/mail, rewritten by
# provisioning/resources/mail.py through SSH and followed by a reload:
#   domains    "example.com OK"                           Postfix virtual_mailbox_domains
#   mailboxes  "info@example.com example.com/info/"       Postfix virtual_mailbox_maps
#   aliases    "sales@example.com info@example.com,..."   Postfix virtual_alias_maps
#   passwd     Dovecot passwd-file: "info@example.com:{BLF-CRYPT}...::::::userdb_quota_rule=..."
# Postfix delivers to Dovecot over LMTP; Dovecot stores Maildirs under /var/mail/vhosts as the
# vmail user and enforces per-mailbox quotas.
#
# Environment:
#   MAIL_LISTEN    where SMTP and IMAP listen: "loopback" (test node default) or "all"
#   MAIL_HOSTNAME  Postfix myhostname [hostname -f]
#   MAIL_TLS_CERT, MAIL_TLS_KEY  certificate for IMAP/SMTP STARTTLS; without them TLS is off,
#                  which Dovecot only accepts for plaintext logins from loopback.
# Idempotent: unchanged configuration is left alone; daemons are started or reloaded.
set -euo pipefail
source "${HW_NODE_LIB:-$(dirname "${BASH_SOURCE[0]}")/../lib.sh}"

test_node=no
if [ "${NODE_ACME:-}" = pebble ] || [ "${NODE_PROFILE:-}" = test ]; then test_node=yes; fi
if [ -z "${MAIL_LISTEN:-}" ]; then
  if [ "$test_node" = yes ]; then MAIL_LISTEN=loopback; else MAIL_LISTEN=all; fi
fi
case "$MAIL_LISTEN" in
  loopback) postfix_if=loopback-only; dovecot_listen=127.0.0.1 ;;
  all) postfix_if=all; dovecot_listen="*, ::" ;;
  *) echo "80-mail: MAIL_LISTEN must be loopback or all" >&2; exit 1 ;;
esac
: "${MAIL_HOSTNAME:=$(hostname -f 2>/dev/null || hostname)}"
[[ "$MAIL_HOSTNAME" =~ ^[A-Za-z0-9.-]+$ ]] || { echo "80-mail: bad MAIL_HOSTNAME" >&2; exit 1; }

MAIL_ETC=/etc/hostwright/mail
VHOSTS=/var/mail/vhosts

missing=()
for pkg in postfix dovecot-core dovecot-imapd dovecot-lmtpd; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "80-mail: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null \
  || useradd --system --gid vmail --home-dir "$VHOSTS" --no-create-home --shell /usr/sbin/nologin vmail
install -d -o vmail -g vmail -m 0770 "$VHOSTS"

install -d -m 0755 /etc/hostwright
install -d -o root -g dovecot -m 0750 "$MAIL_ETC"
for f in domains mailboxes aliases; do
  [ -e "$MAIL_ETC/$f" ] || install -o root -g root -m 0644 /dev/null "$MAIL_ETC/$f"
done
# Password hashes: readable by Dovecot's auth process only.
[ -e "$MAIL_ETC/passwd" ] || install -o root -g dovecot -m 0640 /dev/null "$MAIL_ETC/passwd"
chown root:dovecot "$MAIL_ETC/passwd"
chmod 0640 "$MAIL_ETC/passwd"

# --- Postfix -------------------------------------------------------------------------------
[ -s /etc/mailname ] || echo "$MAIL_HOSTNAME" >/etc/mailname
[ -s /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
before=$(postconf -n | md5sum)
# texthash maps are read at start and reload: no postmap step, nothing to get out of sync.
postconf -e \
  "myhostname = $MAIL_HOSTNAME" \
  "mydestination = localhost" \
  "inet_interfaces = $postfix_if" \
  "inet_protocols = ipv4" \
  "virtual_mailbox_domains = texthash:$MAIL_ETC/domains" \
  "virtual_mailbox_maps = texthash:$MAIL_ETC/mailboxes" \
  "virtual_alias_maps = texthash:$MAIL_ETC/aliases" \
  "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
  "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination" \
  "message_size_limit = 52428800" \
  "compatibility_level = 3.6"
if [ -n "${MAIL_TLS_CERT:-}" ] && [ -n "${MAIL_TLS_KEY:-}" ]; then
  postconf -e "smtpd_tls_cert_file = $MAIL_TLS_CERT" "smtpd_tls_key_file = $MAIL_TLS_KEY" \
    "smtpd_tls_security_level = may"
else
  postconf -e "smtpd_tls_security_level = none"
fi
after=$(postconf -n | md5sum)
[ -f /etc/aliases ] || echo "postmaster: root" >/etc/aliases
[ -f /etc/aliases.db ] || newaliases

# --- Dovecot -------------------------------------------------------------------------------
# Only virtual users log in: Debian's system-user (PAM) passdb is switched off.
sed -i 's/^!include auth-system.conf.ext/#!include auth-system.conf.ext/' /etc/dovecot/conf.d/10-auth.conf
# Debian points ssl_cert at a file a fresh install may not have; Dovecot reads it while parsing
# even when local.conf turns TLS off, so the certificate is chosen in local.conf only.
sed -i -E 's/^(ssl_(cert|key) = <)/#\1/' /etc/dovecot/conf.d/10-ssl.conf
if [ -n "${MAIL_TLS_CERT:-}" ] && [ -n "${MAIL_TLS_KEY:-}" ]; then
  ssl_block="ssl = yes
ssl_cert = <$MAIL_TLS_CERT
ssl_key = <$MAIL_TLS_KEY"
else
  ssl_block="ssl = no"
fi
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Managed by Hostwright (deploy/node/parts/80-mail.sh); edits are overwritten.
protocols = imap lmtp
listen = $dovecot_listen
$ssl_block
# Plaintext logins are still refused except from loopback, which Dovecot treats as secure.
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:$VHOSTS/%d/%n/Maildir
mail_uid = vmail
mail_gid = vmail
first_valid_uid = $(id -u vmail)
mail_plugins = \$mail_plugins quota

passdb {
  driver = passwd-file
  args = scheme=BLF-CRYPT username_format=%u $MAIL_ETC/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $MAIL_ETC/passwd
  default_fields = uid=vmail gid=vmail home=$VHOSTS/%d/%n
}

plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1G
  quota_grace = 0%%
}

protocol imap {
  mail_plugins = \$mail_plugins imap_quota
}
protocol lmtp {
  postmaster_address = postmaster@$MAIL_HOSTNAME
}

service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
EOF
dovecot_changed=no
if ! cmp -s "$new_conf" /etc/dovecot/local.conf; then
  install -o root -g root -m 0644 "$new_conf" /etc/dovecot/local.conf
  dovecot_changed=yes
fi
doveconf -n >/dev/null

if [ -d /run/systemd/system ]; then
  systemctl enable -q postfix dovecot
  systemctl start postfix dovecot
  [ "$before" = "$after" ] || systemctl reload postfix
  [ "$dovecot_changed" = no ] || systemctl restart dovecot
else
  if postfix status >/dev/null 2>&1; then
    [ "$before" = "$after" ] || postfix reload >/dev/null 2>&1
  else
    hw_daemon postfix postfix start
  fi
  if doveadm service status >/dev/null 2>&1 || pgrep -x dovecot >/dev/null; then
    [ "$dovecot_changed" = no ] || doveadm reload
  else
    hw_daemon dovecot dovecot
  fi
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
  port_open 25 && port_open 143 && break
  sleep 0.1
done
port_open 25 || { echo "80-mail: Postfix does not answer on 25" >&2; exit 1; }
port_open 143 || { echo "80-mail: Dovecot does not answer on 143" >&2; exit 1; }
echo "80-mail: SMTP on 25 and IMAP on 143 ($MAIL_LISTEN), data in $MAIL_ETC"
