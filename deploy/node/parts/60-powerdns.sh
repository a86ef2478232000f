#!/usr/bin/env bash
# Node part: PowerDNS authoritative server with the sqlite3 backend and its HTTP API.
#
# The panel manages zones through the API (provisioning/resources/dns.py); the API listens on
# loopback only and is reached over the node's SSH connection. The API key is generated once
# and kept in a root-only file that the panel reads over SSH.
#
# Environment (defaults in brackets):
#   PDNS_LOCAL_ADDRESS  addresses DNS listens on   [127.0.0.1 on a test node, 0.0.0.0 otherwise]
#   PDNS_LOCAL_PORT     DNS port                   [5353 on a test node, 53 otherwise]
#   PDNS_API_ADDRESS    HTTP API address           [127.0.0.1]
#   PDNS_API_PORT       HTTP API port              [8081]
# A test/demo node is one bootstrapped with NODE_ACME=pebble (or NODE_PROFILE=test).
#
# Idempotent: running it again changes nothing unless the configuration changed, in which
# case the server is restarted.
set -euo pipefail
source "${HW_NODE_LIB:-$(dirname "${BASH_SOURCE[0]}")/../lib.sh}"

test_node=no
if [ "${NODE_ACME:-}" = pebble ] || [ "${NODE_PROFILE:-}" = test ]; then test_node=yes; fi
if [ "$test_node" = yes ]; then
  : "${PDNS_LOCAL_ADDRESS:=127.0.0.1}" "${PDNS_LOCAL_PORT:=5353}"
else
  : "${PDNS_LOCAL_ADDRESS:=0.0.0.0}" "${PDNS_LOCAL_PORT:=53}"
fi
: "${PDNS_API_ADDRESS:=127.0.0.1}" "${PDNS_API_PORT:=8081}"

for value in "$PDNS_LOCAL_PORT" "$PDNS_API_PORT"; do
  [[ "$value" =~ ^[0-9]{1,5}$ ]] || { echo "60-powerdns: bad port: $value" >&2; exit 1; }
done
for value in "$PDNS_LOCAL_ADDRESS" "$PDNS_API_ADDRESS"; do
  [[ "$value" =~ ^[0-9A-Fa-f.:,\ ]+$ ]] || { echo "60-powerdns: bad address: $value" >&2; exit 1; }
done

HW_ETC=/etc/hostwright
KEY_FILE=$HW_ETC/pdns-api-key
DB=/var/lib/powerdns/hostwright.sqlite3
CONF=/etc/powerdns/pdns.d/hostwright.conf
SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql

missing=()
for pkg in pdns-server pdns-backend-sqlite3 sqlite3 curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "60-powerdns: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts the daemon from the package on systemd hosts; we configure it below.
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

install -d -m 0755 "$HW_ETC"
if [ ! -s "$KEY_FILE" ]; then
  umask 077
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY_FILE"
  umask 022
fi
chown root:root "$KEY_FILE"
chmod 0600 "$KEY_FILE"
api_key=$(cat "$KEY_FILE")
# The same key as a header file for `curl -H @file`: the panel calls the API through SSH
# without the key ever leaving the node or appearing in a command line.
umask 077
printf 'X-API-Key: %s\n' "$api_key" >"$HW_ETC/pdns-api-header.tmp"
umask 022
mv -f "$HW_ETC/pdns-api-header.tmp" "$HW_ETC/pdns-api-header"

install -d -o pdns -g pdns -m 0750 /var/lib/powerdns
if [ ! -s "$DB" ]; then
  sqlite3 "$DB" <"$SCHEMA"
fi
chown pdns:pdns "$DB"
chmod 0640 "$DB"

# Debian's example bind backend is not used: its settings would be unknown to a server that
# does not load it, so it is set aside (once) rather than combined with ours.
if [ -f /etc/powerdns/pdns.d/bind.conf ]; then
  mv /etc/powerdns/pdns.d/bind.conf /etc/powerdns/pdns.d/bind.conf.hostwright-disabled
fi

# Written to a temporary file first so that an unchanged configuration does not restart the
# server. Later include files override earlier ones, so `launch=` here replaces Debian's bind.
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Managed by Hostwright (deploy/node/parts/60-powerdns.sh); edits are overwritten.
launch=gsqlite3
gsqlite3-database=$DB
gsqlite3-pragma-synchronous=1
local-address=$PDNS_LOCAL_ADDRESS
local-port=$PDNS_LOCAL_PORT
api=yes
api-key=$api_key
webserver=yes
webserver-address=$PDNS_API_ADDRESS
webserver-port=$PDNS_API_PORT
webserver-allow-from=127.0.0.1,::1
setuid=pdns
setgid=pdns
socket-dir=/run/pdns
EOF
changed=no
if ! cmp -s "$new_conf" "$CONF"; then
  install -o root -g pdns -m 0640 "$new_conf" "$CONF"
  changed=yes
fi

api_up() {
  curl -fsS -o /dev/null -H "X-API-Key: $api_key" \
    "http://$PDNS_API_ADDRESS:$PDNS_API_PORT/api/v1/servers/localhost" 2>/dev/null
}

install -d -o pdns -g pdns -m 0755 /run/pdns
if [ -d /run/systemd/system ]; then
  systemctl enable -q pdns
  if [ "$changed" = yes ]; then systemctl restart pdns; else systemctl start pdns; fi
else
  running=no
  if pdns_control --socket-dir=/run/pdns rping >/dev/null 2>&1; then running=yes; fi
  if [ "$running" = yes ] && [ "$changed" = yes ]; then
    pdns_control --socket-dir=/run/pdns quit >/dev/null 2>&1 || true
    for _ in $(seq 50); do
      pdns_control --socket-dir=/run/pdns rping >/dev/null 2>&1 || break
      sleep 0.1
    done
    running=no
  fi
  if [ "$running" = no ]; then
    hw_daemon pdns pdns_server --config-dir=/etc/powerdns --daemon=yes --guardian=no
  fi
fi

for _ in $(seq 100); do
  api_up && break
  sleep 0.1
done
if ! api_up; then
  echo "60-powerdns: the HTTP API does not answer on $PDNS_API_PORT (try pdns_server --daemon=no)" >&2
  exit 1
fi
echo "60-powerdns: DNS on $PDNS_LOCAL_ADDRESS:$PDNS_LOCAL_PORT, API on $PDNS_API_ADDRESS:$PDNS_API_PORT"
