#!/usr/bin/env bash
# Node part: webmail (Roundcube from Debian's packages) for every mailbox on the node, served by
# the node's nginx and PHP-FPM under the mail server's name (the one 80-mail.sh made the
# certificate for: /etc/hostwright/mail/server-name) and webmail.<node>. Customers log in with
# their mailbox address and password; Roundcube reads mail over IMAP on loopback and sends
# through submission (587, STARTTLS, SMTP AUTH with the same login), so the sending limits,
# the sender check and DKIM apply to webmail as to any mail client.
#
# Settings live in SQLite (/var/lib/roundcube/hostwright); PHP runs as www-data under a
# PHP-FPM master of its own (/etc/hostwright/webmail-fpm.conf), so the accounts' reloads never
# cut a webmail request. HTTPS with the mail certificate on 443, HTTP on 80 (redirected to HTTPS outside
# test nodes). Needs 30-nginx, 40-php and 80-mail. Idempotent.
set -euo pipefail
source "${HW_NODE_LIB:-$(dirname "${BASH_SOURCE[0]}")/../lib.sh}"

MAIL_ETC=/etc/hostwright/mail
DATA=/var/lib/roundcube/hostwright
[ -s "$MAIL_ETC/server-name" ] || { echo "82-webmail: run 80-mail.sh first" >&2; exit 1; }
server_name=$(cat "$MAIL_ETC/server-name")
[[ "$server_name" =~ ^[A-Za-z0-9.-]+$ ]] || { echo "82-webmail: bad server name" >&2; exit 1; }
node_name=${server_name#mail.}
tls_cert=$(postconf -h smtpd_tls_chain_files | awk '{print $2}')
tls_key=$(postconf -h smtpd_tls_chain_files | awk '{print $1}')

dpkg-query -W -f='${Status}' roundcube-core 2>/dev/null | grep -q 'install ok installed' \
  || echo "roundcube-core roundcube/dbconfig-install boolean false" | debconf-set-selections
hw_apt_install --no-recommends roundcube-core roundcube-sqlite3 php8.2-fpm python3

install -d -o www-data -g www-data -m 0750 "$DATA"
if [ ! -s "$DATA/roundcube.db" ]; then
  python3 - "$DATA/roundcube.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + ".new")
db.executescript(open("/usr/share/roundcube/SQL/sqlite.initial.sql").read())
db.commit()
db.close()
PY
  chown www-data:www-data "$DATA/roundcube.db.new"
  chmod 0640 "$DATA/roundcube.db.new"
  mv -f "$DATA/roundcube.db.new" "$DATA/roundcube.db"
fi

# The session encryption key: made once on the node, kept across runs.
[ -s /etc/hostwright/webmail-des-key ] \
  || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >/etc/hostwright/webmail-des-key)
des_key=$(cat /etc/hostwright/webmail-des-key)

hw_install_file /etc/roundcube/config.inc.php 0640 >/dev/null <<EOF
<?php
// Managed by Hostwright (deploy/node/parts/82-webmail.sh); edits are overwritten.
\$config = [];
\$config['db_dsnw'] = 'sqlite:///$DATA/roundcube.db?mode=0640';
// IMAP on loopback (Dovecot allows plaintext logins there only); the login is the mailbox.
\$config['imap_host'] = 'localhost:143';
\$config['username_domain'] = '';
// Sending goes through submission like any mail client: TLS, SMTP AUTH, limits and DKIM.
// The connection never leaves the machine, so the certificate name is not checked.
\$config['smtp_host'] = 'tls://127.0.0.1:587';
\$config['smtp_user'] = '%u';
\$config['smtp_pass'] = '%p';
\$config['smtp_conn_options'] = ['ssl' => ['verify_peer' => false, 'verify_peer_name' => false]];
\$config['des_key'] = '$des_key';
\$config['product_name'] = 'Webmail';
\$config['support_url'] = '';
\$config['skin'] = 'elastic';
\$config['plugins'] = [];
\$config['enable_spellcheck'] = false;
\$config['enable_installer'] = false;
\$config['login_rate_limit'] = 5;
\$config['log_driver'] = 'file';
\$config['temp_dir'] = '/var/lib/roundcube/temp/';
\$config['use_https'] = false;
\$config['ip_check'] = true;
EOF
chown root:www-data /etc/roundcube/config.inc.php

# PHP for webmail runs under a PHP-FPM master of its own: the accounts' master is reloaded
# whenever an account's pool changes, and a reload cuts the requests in flight (a message being
# sent from webmail).
FPM_CONF=/etc/hostwright/webmail-fpm.conf
FPM_PID=/run/php/hw-webmail-fpm.pid
pool_changed=$(hw_install_file "$FPM_CONF" 0644 <<'EOF'
; Managed by Hostwright (deploy/node/parts/82-webmail.sh).
[global]
pid = /run/php/hw-webmail-fpm.pid
error_log = /var/log/hostwright/webmail-fpm.log
process_control_timeout = 30s

[hw-webmail]
user = www-data
group = www-data
listen = /run/php/hw-webmail-fpm.sock
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = ondemand
pm.max_children = 8
pm.process_idle_timeout = 60s
php_admin_value[upload_max_filesize] = 25M
php_admin_value[post_max_size] = 26M
php_admin_value[open_basedir] = /usr/share/roundcube:/var/lib/roundcube:/etc/roundcube:/var/log/roundcube:/usr/share/php:/usr/share/javascript:/usr/share/nodejs:/tmp
EOF
)

if hw_test_node; then
  plain_http="    include /etc/nginx/snippets/hostwright-webmail.conf;"
else
  plain_http="    location / { return 301 https://\$host\$request_uri; }"
fi
hw_install_file /etc/nginx/snippets/hostwright-webmail.conf 0644 >/dev/null <<'EOF'
# Managed by Hostwright (deploy/node/parts/82-webmail.sh): Roundcube.
root /var/lib/roundcube/public_html;
index index.php;
client_max_body_size 26m;
# Only the front controller runs PHP; everything else is a static file or nothing.
location ~ ^/(index\.php)?$ {
    include fastcgi_params;
    fastcgi_param SCRIPT_FILENAME $document_root/index.php;
    fastcgi_pass unix:/run/php/hw-webmail-fpm.sock;
}
location ~ \.php$ { return 404; }
location ~ /\. { return 404; }
location / { try_files $uri =404; }
EOF
nginx_changed=$(hw_install_file /etc/nginx/conf.d/hostwright-webmail.conf 0644 <<EOF
# Managed by Hostwright (deploy/node/parts/82-webmail.sh): webmail under the mail server's name.
server {
    listen 80;
    server_name $server_name webmail.$node_name;
    include /etc/nginx/snippets/hostwright-acme*.conf;
$plain_http
}
server {
    listen 443 ssl;
    server_name $server_name webmail.$node_name;
    ssl_certificate $tls_cert;
    ssl_certificate_key $tls_key;
    include /etc/nginx/snippets/hostwright-webmail.conf;
}
EOF
)

install -d -m 0755 /run/php /var/log/hostwright
php-fpm8.2 -t --fpm-config "$FPM_CONF" 2>/dev/null || { php-fpm8.2 -t --fpm-config "$FPM_CONF"; exit 1; }
# (an earlier version of this part ran the pool under the accounts' master)
if [ -e /etc/php/8.2/fpm/pool.d/hw-webmail.conf ]; then
  rm -f /etc/php/8.2/fpm/pool.d/hw-webmail.conf
  if hw_have_systemd; then
    systemctl reload php8.2-fpm
  elif hw_pid_alive /run/php/php8.2-fpm.pid; then
    kill -USR2 "$(cat /run/php/php8.2-fpm.pid)"
    sleep 1  # the old master lets go of the webmail socket
  fi
fi
if hw_have_systemd; then
  unit_changed=$(hw_install_file /etc/systemd/system/hostwright-webmail-fpm.service 0644 <<UNIT
# Managed by Hostwright (deploy/node/parts/82-webmail.sh).
[Unit]
Description=PHP-FPM for webmail (Hostwright)
After=network.target

[Service]
Type=notify
ExecStart=/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config $FPM_CONF
ExecReload=/bin/kill -USR2 \$MAINPID
RuntimeDirectory=php
RuntimeDirectoryPreserve=yes

[Install]
WantedBy=multi-user.target
UNIT
  )
  [ -z "$unit_changed" ] || systemctl daemon-reload
  systemctl enable -q --now hostwright-webmail-fpm
  if [ -n "$pool_changed" ] || [ -n "$unit_changed" ]; then
    systemctl restart hostwright-webmail-fpm
  fi
elif hw_pid_alive "$FPM_PID"; then
  [ -z "$pool_changed" ] || kill -USR2 "$(cat "$FPM_PID")"
else
  hw_daemon webmail-fpm php-fpm8.2 --fpm-config "$FPM_CONF"
fi
if [ -n "$nginx_changed" ]; then
  nginx -t -q 2>/dev/null || { nginx -t; exit 1; }
  if hw_have_systemd; then systemctl reload nginx; else nginx -s reload 2>/dev/null; fi
fi
for _ in $(seq 100); do [ -S /run/php/hw-webmail-fpm.sock ] && break; sleep 0.1; done
[ -S /run/php/hw-webmail-fpm.sock ] || { echo "82-webmail: the PHP pool did not start" >&2; exit 1; }
echo "82-webmail: Roundcube on http(s)://$server_name/ and webmail.$node_name"
