#!/usr/bin/env bash
# Node part: what ACME certificates need on the node.
#
# - The ACME webroot: HTTP-01 challenge files are written to
#   /var/lib/hostwright/acme/.well-known/acme-challenge/<token>, and every site's nginx server
#   block includes snippets/hostwright-acme.conf, which serves that directory for any host name.
# - /etc/hostwright/certs: issued certificates and keys, one root-only directory per name.
# - With NODE_ACME=pebble (test and demo nodes only): a Pebble ACME server on 127.0.0.1:14000
#   that validates HTTP-01 on port 80 (so through nginx) and resolves names through the node's
#   PowerDNS, so a certificate is only issued when our zone really points at the node.
#
# Environment: NODE_ACME (pebble | anything else: none), PDNS_LOCAL_PORT (as in 60-powerdns.sh),
# PEBBLE_LISTEN [127.0.0.1:14000], PEBBLE_MANAGEMENT [127.0.0.1:15000].
# Idempotent; Pebble is restarted only when its configuration changed.
set -euo pipefail

WEBROOT=/var/lib/hostwright/acme
CERTS=/etc/hostwright/certs
SNIPPET=/etc/nginx/snippets/hostwright-acme.conf

install -d -m 0755 /var/lib/hostwright "$WEBROOT" "$WEBROOT/.well-known"
install -d -m 0755 "$WEBROOT/.well-known/acme-challenge"
install -d -m 0755 /etc/hostwright
install -d -o root -g root -m 0700 "$CERTS"

install -d -m 0755 /etc/nginx/snippets
# Each site's HTTPS part (written by the panel once it has a certificate) lives here.
install -d -m 0755 /etc/nginx/hostwright /etc/nginx/hostwright/tls
new_snippet=$(mktemp)
trap 'rm -f "$new_snippet"' EXIT
cat >"$new_snippet" <<EOF
# Managed by Hostwright (deploy/node/parts/70-acme.sh): ACME HTTP-01 challenges for every site.
location ^~ /.well-known/acme-challenge/ {
    root $WEBROOT;
    default_type text/plain;
    try_files \$uri =404;
}
EOF
cmp -s "$new_snippet" "$SNIPPET" || install -m 0644 "$new_snippet" "$SNIPPET"

if [ "${NODE_ACME:-}" != pebble ]; then
  echo "70-acme: webroot $WEBROOT ready (no local ACME server)"
  exit 0
fi

: "${PDNS_LOCAL_PORT:=5353}" "${PEBBLE_LISTEN:=127.0.0.1:14000}" "${PEBBLE_MANAGEMENT:=127.0.0.1:15000}"
for value in "$PDNS_LOCAL_PORT"; do
  [[ "$value" =~ ^[0-9]{1,5}$ ]] || { echo "70-acme: bad port: $value" >&2; exit 1; }
done
for value in "$PEBBLE_LISTEN" "$PEBBLE_MANAGEMENT"; do
  [[ "$value" =~ ^[0-9.]+:[0-9]{1,5}$ ]] || { echo "70-acme: bad listen address: $value" >&2; exit 1; }
done

missing=()
for pkg in pebble openssl curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "70-acme: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

PEBBLE_DIR=/etc/hostwright/pebble
install -d -m 0755 "$PEBBLE_DIR" /var/log/hostwright /run/hostwright
# Pebble's own HTTPS listener certificate; clients verify against this file.
if [ ! -s "$PEBBLE_DIR/cert.pem" ] || [ ! -s "$PEBBLE_DIR/key.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Hostwright test ACME server" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$PEBBLE_DIR/key.pem" -out "$PEBBLE_DIR/cert.pem" 2>/dev/null
  chmod 0600 "$PEBBLE_DIR/key.pem"
  chmod 0644 "$PEBBLE_DIR/cert.pem"
fi

new_conf=$(mktemp)
trap 'rm -f "$new_snippet" "$new_conf"' EXIT
cat >"$new_conf" <<EOF
{
  "pebble": {
    "listenAddress": "$PEBBLE_LISTEN",
    "managementListenAddress": "$PEBBLE_MANAGEMENT",
    "certificate": "$PEBBLE_DIR/cert.pem",
    "privateKey": "$PEBBLE_DIR/key.pem",
    "httpPort": 80,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  },
  "hostwright": {"dnsserver": "127.0.0.1:$PDNS_LOCAL_PORT"}
}
EOF
changed=no
if ! cmp -s "$new_conf" "$PEBBLE_DIR/config.json"; then
  install -m 0644 "$new_conf" "$PEBBLE_DIR/config.json"
  changed=yes
fi

directory_up() {
  curl -fsS -o /dev/null --cacert "$PEBBLE_DIR/cert.pem" "https://$PEBBLE_LISTEN/dir" 2>/dev/null
}

# PEBBLE_VA_NOSLEEP: no artificial validation delays. PEBBLE_WFE_NONCEREJECT=0: Pebble
# otherwise rejects a share of valid nonces on purpose, which only tests client retries.
if [ -d /run/systemd/system ]; then
  cat >/etc/systemd/system/hostwright-pebble.service.new <<EOF
[Unit]
Description=Pebble ACME test server (Hostwright test node)
After=network.target pdns.service

[Service]
Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
ExecStart=/usr/bin/pebble -config $PEBBLE_DIR/config.json -dnsserver 127.0.0.1:$PDNS_LOCAL_PORT
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
  if ! cmp -s /etc/systemd/system/hostwright-pebble.service.new /etc/systemd/system/hostwright-pebble.service; then
    mv /etc/systemd/system/hostwright-pebble.service.new /etc/systemd/system/hostwright-pebble.service
    systemctl daemon-reload
    changed=yes
  else
    rm -f /etc/systemd/system/hostwright-pebble.service.new
  fi
  systemctl enable -q hostwright-pebble
  if [ "$changed" = yes ]; then systemctl restart hostwright-pebble; else systemctl start hostwright-pebble; fi
else
  PIDFILE=/run/hostwright/pebble.pid
  running=no
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then running=yes; fi
  if [ "$running" = yes ] && [ "$changed" = yes ]; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    running=no
  fi
  if [ "$running" = no ]; then
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 setsid /usr/bin/pebble \
      -config "$PEBBLE_DIR/config.json" -dnsserver "127.0.0.1:$PDNS_LOCAL_PORT" \
      >>/var/log/hostwright/pebble.log 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
fi

for _ in $(seq 100); do
  directory_up && break
  sleep 0.1
done
if ! directory_up; then
  echo "70-acme: Pebble does not answer on $PEBBLE_LISTEN (see /var/log/hostwright/pebble.log)" >&2
  exit 1
fi
echo "70-acme: webroot $WEBROOT ready, Pebble on https://$PEBBLE_LISTEN/dir"
