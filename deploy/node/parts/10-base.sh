#!/usr/bin/env bash
# Node part: packages and directories every hosting node needs.
set -euo pipefail
source "$HW_NODE_LIB"

hw_apt_install openssh-server nginx-light php8.2-fpm php8.2-cli php8.2-mysql mariadb-server \
  mariadb-client util-linux procps passwd coreutils
command -v nginx >/dev/null || { echo "10-base: nginx missing after install" >&2; exit 1; }

install -d -m 0755 /etc/hostwright /var/lib/hostwright /run/hostwright
install -d -m 0700 /etc/hostwright/authorized_keys
# Account homes must not be readable by other accounts: new homes are 0750.
if grep -q '^HOME_MODE' /etc/login.defs; then
  sed -i 's/^HOME_MODE.*/HOME_MODE\t0750/' /etc/login.defs
else
  printf 'HOME_MODE\t0750\n' >>/etc/login.defs
fi
echo "10-base: packages and directories ready"
