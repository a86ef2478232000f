#!/usr/bin/env bash
# The demo's task broker is a redis-server that `manage.py rundemo` starts on a unix socket
# under var/redis/ (no TCP port). This only makes sure Debian's package is installed.
set -euo pipefail

command -v redis-server >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "redis-server is missing: run make demo as root once, or apt-get install redis-server" >&2
  exit 1
fi
echo "installing Redis (Debian's redis-server) for the demo's task broker"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; then
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends redis-server >/dev/null
fi
# Debian's package may start its own server on port 6379; the demo does not use it.
command -v redis-server >/dev/null
