#!/usr/bin/env bash
# Node part: MariaDB on the node's socket; the panel creates databases and users as root
# through unix-socket authentication (no password stored anywhere).
set -euo pipefail
source "$HW_NODE_LIB"

ping_db() { mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1; }
if ! ping_db; then
  if hw_have_systemd; then
    systemctl enable --now mariadb >/dev/null 2>&1 || systemctl start mariadb
  else
    service mariadb start >/dev/null
  fi
fi
for _ in $(seq 100); do ping_db && break; sleep 0.1; done
ping_db || { echo "50-mariadb: MariaDB does not answer" >&2; exit 1; }
echo "50-mariadb: MariaDB answers on its socket"
