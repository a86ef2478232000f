#!/usr/bin/env bash
# Node part: MariaDB on the node's socket; the panel creates databases and users as root
# through unix-socket authentication (no password stored anywhere).
set -euo pipefail
source "$HW_NODE_LIB"

ping_db() { mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1; }
start_db() {
  if hw_have_systemd; then
    systemctl enable --now mariadb >/dev/null 2>&1 || systemctl start mariadb || true
  else
    # A server that is still shutting down makes the first start fail: tried again below.
    service mariadb start >/dev/null 2>&1 || true
  fi
}
for attempt in 1 2 3; do
  ping_db && break
  start_db
  for _ in $(seq 100); do ping_db && break; sleep 0.1; done
done
ping_db || { echo "50-mariadb: MariaDB does not answer" >&2; exit 1; }
echo "50-mariadb: MariaDB answers on its socket"
