#!/usr/bin/env bash
# Node part: Postfix (SMTP in, submission out), Dovecot (IMAP, POP3, LMTP, SASL, Sieve),
# OpenDKIM (signing) and the mail filter that holds senders to their domains and hourly limits,
# for virtual mail domains.
#
# The panel owns the mail data in plain files under /etc/hostwright/mail, rewritten by
# provisioning/resources/mail.py and followed by a reload:
#   domains      "example.com OK"                          Postfix virtual_mailbox_domains
#   mailboxes    "info@example.com example.com/info/"      Postfix virtual_mailbox_maps
#   aliases      "sales@example.com info@example.com,..."  forwarders (virtual_alias_maps)
#   catchall     "@example.com info@example.com"           catch-all (virtual_alias_maps, last)
#   limits       "example.com acct 500 100"                account, messages/hour per account
#                                                          and per mailbox (mail-sending.py)
#   passwd       Dovecot passwd-file: "info@example.com:{BLF-CRYPT}...::::::userdb_quota_rule=..."
#   selfaliases  derived: every mailbox mapped to itself, so a catch-all never swallows it
#   senders      derived: "@example.com info@example.com,..." every login of the account that
#                owns the domain (smtpd_sender_login_maps)
#   dkim/keytable, dkim/signingtable, dkim/<domain>/<selector>.private   OpenDKIM
#   sni, sni.db  tls_server_sni_maps (postmap -F), dovecot-sni.conf: per-domain certificates
#
# Ports: 25 SMTP (STARTTLS offered, no AUTH), 587 submission (STARTTLS required before AUTH),
# 465 submission over implicit TLS, 143/110 IMAP/POP3 (STARTTLS), 993/995 IMAPS/POP3S.
# Submission logs in through Dovecot's SASL with the mailbox password and may only send as
# addresses of the login's own account (reject_sender_login_mismatch for the envelope, the
# mail filter for the From: header).
#
# Sites send over SMTP to 127.0.0.1:25 (PHP's sendmail_path is the node's wrapper, 40-php.sh):
# hosting accounts may not run Postfix's sendmail/postdrop (authorized_submit_users refuses
# every user whose passwd entry carries the account tag), and the mail filter
# (mail-sending.py milter, on port 25 and submission) knows the account from the kernel's
# socket table: the connecting socket's owner, which no customer can choose. Their envelope
# sender and From: must be of the account's own domains and they count against the
# account's hourly limit. Everything leaving through submission, port 25 from this machine
# or Postfix's sendmail (auto-replies) is DKIM-signed when its From: domain has a key.
#
# Environment:
#   MAIL_LISTEN       where the daemons listen: "loopback" (test node default) or "all"
#   MAIL_HOSTNAME     Postfix myhostname [hostname -f]
#   MAIL_SERVER_NAME  the name mail clients use [mail.$MAIL_HOSTNAME]
#   MAIL_TLS_CERT, MAIL_TLS_KEY  certificate (full chain) and key for MAIL_SERVER_NAME; without
#                     them the node makes a self-signed one (kept across runs)
# Idempotent: unchanged configuration is left alone; daemons are started or reloaded.
set -euo pipefail
source "${HW_NODE_LIB:-$(dirname "${BASH_SOURCE[0]}")/../lib.sh}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

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
: "${MAIL_SERVER_NAME:=mail.$MAIL_HOSTNAME}"
[[ "$MAIL_SERVER_NAME" =~ ^[A-Za-z0-9.-]+$ ]] || { echo "80-mail: bad MAIL_SERVER_NAME" >&2; exit 1; }

MAIL_ETC=/etc/hostwright/mail
VHOSTS=/var/mail/vhosts
TLS_DIR=$MAIL_ETC/tls
DKIM_DIR=$MAIL_ETC/dkim
# OpenDKIM's milter socket, inside Postfix's queue directory: Postfix's daemons (chrooted there
# or not) name it relative to it, as opendkim/opendkim.sock. Only Postfix may connect: the
# directory is opendkim's, group postfix, and closed to everyone else (any process that could
# speak the milter protocol to OpenDKIM could have any message signed for any hosted domain).
DKIM_SOCKET_DIR=/var/spool/postfix/opendkim
DKIM_SOCKET=$DKIM_SOCKET_DIR/opendkim.sock
POLICY_DIR=/var/lib/hostwright/mail-policy
POLICY=/usr/local/lib/hostwright/mail-sending.py

# (debconf only when Postfix is still to be installed: its database may be locked by another
# package run, and an installed node has nothing to ask)
dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed' \
  || echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
hw_apt_install --no-recommends postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
  dovecot-sieve opendkim opendkim-tools openssl python3
# Debian's package leaves main.cf out when told "No configuration"; postmap below needs one.
[ -s /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf

getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null \
  || useradd --system --gid vmail --home-dir "$VHOSTS" --no-create-home --shell /usr/sbin/nologin vmail
getent group hwmailpolicy >/dev/null || groupadd --system hwmailpolicy
getent passwd hwmailpolicy >/dev/null \
  || useradd --system --gid hwmailpolicy --home-dir "$POLICY_DIR" --no-create-home \
    --shell /usr/sbin/nologin hwmailpolicy
install -d -o vmail -g vmail -m 0770 "$VHOSTS"

install -d -m 0755 /etc/hostwright /usr/local/lib/hostwright /var/lib/hostwright
install -d -o root -g dovecot -m 0750 "$MAIL_ETC"
# Postfix's lookups and the mail filter read these; they hold no secrets.
chmod 0755 "$MAIL_ETC"
for f in domains mailboxes aliases catchall limits selfaliases senders sni; do
  [ -e "$MAIL_ETC/$f" ] || install -o root -g root -m 0644 /dev/null "$MAIL_ETC/$f"
done
# Password hashes: readable by Dovecot's auth process only.
[ -e "$MAIL_ETC/passwd" ] || install -o root -g dovecot -m 0640 /dev/null "$MAIL_ETC/passwd"
chown root:dovecot "$MAIL_ETC/passwd"
chmod 0640 "$MAIL_ETC/passwd"
[ -e "$MAIL_ETC/dovecot-sni.conf" ] || install -m 0644 /dev/null "$MAIL_ETC/dovecot-sni.conf"
[ -e "$MAIL_ETC/sni.db" ] || postmap -F "hash:$MAIL_ETC/sni"

# --- TLS: the node's own certificate for MAIL_SERVER_NAME ------------------------------------
install -d -o root -g root -m 0700 "$TLS_DIR"
if [ -n "${MAIL_TLS_CERT:-}" ] && [ -n "${MAIL_TLS_KEY:-}" ]; then
  tls_cert=$MAIL_TLS_CERT
  tls_key=$MAIL_TLS_KEY
else
  tls_cert=$TLS_DIR/node.pem
  tls_key=$TLS_DIR/node.key
  if [ ! -s "$tls_cert" ] || [ ! -s "$tls_key" ] \
    || ! openssl x509 -in "$tls_cert" -noout -checkend 2592000 >/dev/null \
    || ! openssl x509 -in "$tls_cert" -noout -ext subjectAltName 2>/dev/null \
      | grep -q "DNS:$MAIL_SERVER_NAME\(,\|\$\)"; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$MAIL_SERVER_NAME" \
      -addext "subjectAltName=DNS:$MAIL_SERVER_NAME,DNS:$MAIL_HOSTNAME,IP:127.0.0.1" \
      -keyout "$tls_key.new" -out "$tls_cert.new" 2>/dev/null
    chmod 0600 "$tls_key.new"
    chmod 0644 "$tls_cert.new"
    mv -f "$tls_key.new" "$tls_key"
    mv -f "$tls_cert.new" "$tls_cert"
  fi
fi
[ -s "$tls_cert" ] && [ -s "$tls_key" ] || { echo "80-mail: no TLS certificate" >&2; exit 1; }
echo "$MAIL_SERVER_NAME" | hw_install_file "$MAIL_ETC/server-name" 0644 >/dev/null

# --- the mail filter (senders, hourly limits) --------------------------------------------------
install -d -o hwmailpolicy -g hwmailpolicy -m 0750 "$POLICY_DIR"
hw_install_file "$POLICY" 0755 <"$here/../mail/mail-sending.py" >/dev/null

# --- OpenDKIM --------------------------------------------------------------------------------
install -d -o opendkim -g opendkim -m 0750 "$DKIM_DIR"
for f in keytable signingtable; do
  [ -e "$DKIM_DIR/$f" ] || install -o opendkim -g opendkim -m 0640 /dev/null "$DKIM_DIR/$f"
done
install -d -o opendkim -g opendkim -m 0755 /run/opendkim
# setgid: the socket OpenDKIM makes there is of group postfix (and 0770 by its UMask).
install -d -o opendkim -g postfix -m 2750 "$DKIM_SOCKET_DIR"
dkim_changed=$(hw_install_file /etc/opendkim.conf 0644 <<EOF
# Managed by Hostwright (deploy/node/parts/80-mail.sh); edits are overwritten.
# Signs mail from authenticated submission and from the node itself (sites' sendmail);
# keys per domain are listed in $DKIM_DIR by the panel. Listens on a socket only Postfix
# can reach.
Syslog yes
UMask 007
UserID opendkim
Mode s
Canonicalization relaxed/simple
OversignHeaders From
KeyTable file:$DKIM_DIR/keytable
SigningTable refile:$DKIM_DIR/signingtable
InternalHosts 127.0.0.1, ::1
Socket local:$DKIM_SOCKET
PidFile /run/opendkim/opendkim.pid
EOF
)

# --- Postfix ---------------------------------------------------------------------------------
[ -s /etc/mailname ] || echo "$MAIL_HOSTNAME" >/etc/mailname
# Hosting accounts (passwd entries tagged "hostwright service <id>" by the node agent) may not
# run sendmail, postdrop, mailq or postqueue -f: their mail goes over SMTP, where the mail
# filter knows them. Read by those commands as the calling user: world-readable.
hw_install_file /etc/postfix/hostwright-accounts.regexp 0644 >/dev/null <<'EOF'
# Managed by Hostwright (deploy/node/parts/80-mail.sh): a passwd entry of a hosting account.
/^[^:]*:[^:]*:[^:]*:[^:]*:hostwright service [0-9]+(,[^:]*)?:/ account
EOF
no_accounts="!pipemap:{unix:passwd.byname, regexp:/etc/postfix/hostwright-accounts.regexp}"
[ -s /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
before=$( (postconf -n; postconf -M; postconf -P) | md5sum)
# texthash maps are read at start and reload: no postmap step, nothing to get out of sync.
postconf -e \
  "myhostname = $MAIL_HOSTNAME" \
  "mydestination = localhost" \
  "inet_interfaces = $postfix_if" \
  "inet_protocols = ipv4" \
  "virtual_mailbox_domains = texthash:$MAIL_ETC/domains" \
  "virtual_mailbox_maps = texthash:$MAIL_ETC/mailboxes" \
  "virtual_alias_maps = texthash:$MAIL_ETC/aliases texthash:$MAIL_ETC/selfaliases texthash:$MAIL_ETC/catchall" \
  "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
  "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination" \
  "message_size_limit = 52428800" \
  "compatibility_level = 3.6" \
  "smtpd_tls_chain_files = $tls_key $tls_cert" \
  "smtpd_tls_security_level = may" \
  "smtpd_tls_auth_only = yes" \
  "smtpd_tls_protocols = >=TLSv1.2" \
  "smtpd_tls_mandatory_protocols = >=TLSv1.2" \
  "smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache" \
  "smtp_tls_security_level = may" \
  "tls_server_sni_maps = hash:$MAIL_ETC/sni" \
  "smtpd_sasl_type = dovecot" \
  "smtpd_sasl_path = private/auth" \
  "smtpd_sasl_auth_enable = no" \
  "smtpd_sender_login_maps = texthash:$MAIL_ETC/senders" \
  "milter_default_action = accept" \
  "milter_protocol = 6" \
  "milter_connect_macros = j {daemon_name} {daemon_addr} {daemon_port} v _" \
  "smtpd_milters = { unix:private/hwmilter, default_action=tempfail }, unix:opendkim/opendkim.sock" \
  "non_smtpd_milters = unix:opendkim/opendkim.sock" \
  "authorized_submit_users = $no_accounts, static:anyone" \
  "authorized_mailq_users = $no_accounts, static:anyone" \
  "authorized_flush_users = $no_accounts, static:anyone" \
  "hw_submission_client = permit_sasl_authenticated reject" \
  "hw_submission_sender = reject_sender_login_mismatch permit_sasl_authenticated reject" \
  "hwmilter_time_limit = 3600s"
postconf -X smtpd_tls_cert_file smtpd_tls_key_file 2>/dev/null || true
# The mail filter's program before it became mail-sending.py: nothing runs it any more.
postconf -M | grep -q mail-policy.py || rm -f /usr/local/lib/hostwright/mail-policy.py
# Submission: 587 with STARTTLS required before AUTH, 465 with TLS from the first byte. Not
# chrooted, so the SASL and mail filter sockets are found where they are.
submission_opts=(
  "smtpd_tls_security_level=encrypt"
  "smtpd_sasl_auth_enable=yes"
  "smtpd_tls_auth_only=yes"
  "smtpd_client_restrictions=\$hw_submission_client"
  "smtpd_sender_restrictions=\$hw_submission_sender"
  "smtpd_relay_restrictions=\$hw_submission_client"
  "smtpd_recipient_restrictions="
)
postconf -M "submission/inet=submission inet n - n - - smtpd"
postconf -M "submissions/inet=submissions inet n - n - - smtpd"
postconf -M "hwmilter/unix=hwmilter unix - n n - 0 spawn user=hwmailpolicy argv=/usr/bin/python3 $POLICY milter"
for opt in "${submission_opts[@]}"; do
  postconf -P "submission/inet/$opt" "submissions/inet/$opt"
done
# (an earlier version of this part gave submission its own list of milters: main.cf's now;
# and counted submission's messages in a policy service at the end of DATA, before the mail
# filter's verdict on the headers, so a message refused for its From: counted too: the mail
# filter counts them now, at the end of the message)
postconf -MX hwpolicy/unix 2>/dev/null || true
postconf -PX submission/inet/smtpd_end_of_data_restrictions \
  submissions/inet/smtpd_end_of_data_restrictions 2>/dev/null || true
postconf -X hw_submission_limits hwpolicy_time_limit 2>/dev/null || true
postconf -PX submission/inet/smtpd_milters submissions/inet/smtpd_milters 2>/dev/null || true
postconf -P "submission/inet/syslog_name=postfix/submission" \
  "submissions/inet/syslog_name=postfix/submissions" "submissions/inet/smtpd_tls_wrappermode=yes"
# Without systemd's journal, Postfix writes its own log (postlogd).
hw_have_systemd || postconf -e "maillog_file = /var/log/hostwright/postfix-mail.log"
after=$( (postconf -n; postconf -M; postconf -P) | md5sum)
[ -f /etc/aliases ] || echo "postmaster: root" >/etc/aliases
[ -f /etc/aliases.db ] || newaliases
postfix check

# --- Dovecot ---------------------------------------------------------------------------------
# Only virtual users log in: Debian's system-user (PAM) passdb is switched off.
sed -i 's/^!include auth-system.conf.ext/#!include auth-system.conf.ext/' /etc/dovecot/conf.d/10-auth.conf
# Debian points ssl_cert at a file a fresh install may not have; the certificate is chosen in
# local.conf only.
sed -i -E 's/^(ssl_(cert|key) = <)/#\1/' /etc/dovecot/conf.d/10-ssl.conf
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Managed by Hostwright (deploy/node/parts/80-mail.sh); edits are overwritten.
protocols = imap pop3 lmtp
listen = $dovecot_listen
ssl = yes
ssl_cert = <$tls_cert
ssl_key = <$tls_key
ssl_min_protocol = TLSv1.2
# Plaintext logins are refused without TLS, except from loopback (which Dovecot treats as
# secure: the node's own webmail logs in there).
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
  # The panel writes a mailbox's auto-reply to its home as .dovecot.sieve.
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_vacation_send_from_recipient = yes
}

protocol imap {
  mail_plugins = \$mail_plugins imap_quota
}
protocol pop3 {
  pop3_uidl_format = %08Xu%08Xv
}
protocol lmtp {
  postmaster_address = postmaster@$MAIL_HOSTNAME
  mail_plugins = \$mail_plugins sieve
}

service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 110
  }
  inet_listener pop3s {
    port = 995
    ssl = yes
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
# Postfix's submission asks Dovecot whether a login and password are right.
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}

# Per-domain certificates by SNI (local_name blocks), written by the panel.
!include_try $MAIL_ETC/dovecot-sni.conf
EOF
dovecot_changed=no
if ! cmp -s "$new_conf" /etc/dovecot/local.conf; then
  install -o root -g root -m 0644 "$new_conf" /etc/dovecot/local.conf
  dovecot_changed=yes
fi
doveconf -n >/dev/null

# --- start or reload -------------------------------------------------------------------------
# A configuration written by an older version of this part and reloaded since leaves the
# daemons without some listeners even though the files are right again: restart then.
# OpenDKIM opens its socket at start only (a node bootstrapped before listened on
# 127.0.0.1:8891): without the socket, or with a changed configuration, it is restarted.
[ -S "$DKIM_SOCKET" ] || dkim_changed=changed
for port in 993 995 110; do hw_port_open "$port" || dovecot_changed=yes; done
for port in 587 465; do hw_port_open "$port" || after=listeners-missing; done

if hw_have_systemd; then
  # Debian's unit takes its socket from /etc/default/opendkim (one in /run/opendkim, outside
  # Postfix's queue directory): run it with this part's configuration instead. The name sorts
  # after the override Debian generates, so its ExecStart wins.
  unit_changed=$(hw_install_file /etc/systemd/system/opendkim.service.d/zz-hostwright.conf 0644 <<'UNIT'
# Managed by Hostwright (deploy/node/parts/80-mail.sh).
[Service]
RuntimeDirectory=opendkim
RuntimeDirectoryPreserve=yes
ExecStartPre=-/bin/rm -f /var/spool/postfix/opendkim/opendkim.sock
ExecStart=
ExecStart=/usr/sbin/opendkim -x /etc/opendkim.conf
UNIT
  )
  if [ -n "$unit_changed" ]; then
    systemctl daemon-reload
    dkim_changed=changed
  fi
  systemctl enable -q postfix dovecot opendkim
  systemctl start postfix dovecot opendkim
  [ "$before" = "$after" ] || systemctl reload postfix
  [ "$dovecot_changed" = no ] || systemctl restart dovecot
  [ -z "$dkim_changed" ] || systemctl restart opendkim
else
  if [ -n "$dkim_changed" ] && hw_pid_alive /run/opendkim/opendkim.pid; then
    # (a reload, SIGUSR1, reads the tables and settings again but keeps the old socket)
    kill -TERM "$(cat /run/opendkim/opendkim.pid)"
    for _ in $(seq 100); do hw_pid_alive /run/opendkim/opendkim.pid || break; sleep 0.1; done
  fi
  if ! hw_pid_alive /run/opendkim/opendkim.pid; then
    rm -f "$DKIM_SOCKET"
    hw_daemon opendkim opendkim -x /etc/opendkim.conf
  fi
  if postfix status >/dev/null 2>&1; then
    [ "$before" = "$after" ] || postfix reload >/dev/null 2>&1
  else
    hw_daemon postfix postfix start
  fi
  if pgrep -x dovecot >/dev/null; then
    # New listeners (ports) need a restart; a reload keeps the old sockets.
    if [ "$dovecot_changed" = yes ]; then
      doveadm stop
      for _ in $(seq 50); do pgrep -x dovecot >/dev/null || break; sleep 0.1; done
      hw_daemon dovecot dovecot
    fi
  else
    hw_daemon dovecot dovecot
  fi
fi

for port in 25 587 465 143 993 110 995; do
  hw_wait_port "$port" || { echo "80-mail: nothing answers on port $port" >&2; exit 1; }
done
for _ in $(seq 100); do [ -S "$DKIM_SOCKET" ] && break; sleep 0.1; done
[ -S "$DKIM_SOCKET" ] || { echo "80-mail: OpenDKIM made no socket at $DKIM_SOCKET" >&2; exit 1; }
echo "80-mail: SMTP 25, submission 587/465, IMAP 143/993, POP3 110/995 ($MAIL_LISTEN) as $MAIL_SERVER_NAME, DKIM milter at $DKIM_SOCKET"
