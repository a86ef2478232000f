#!/usr/bin/env bash
# Turn a Debian 12 host into a Hostwright hosting node, or bring an existing one up to date.
#
#   deploy/node/bootstrap.sh [--profile production|test] [--panel-key FILE] [--parts "10 20"]
#
# Runs deploy/node/parts/*.sh in name order. Every part is idempotent (safe to run again) and
# works with systemd (a real server) and without it (containers, the test node), where it
# starts the daemons directly. Parts read their settings from the environment:
#
#   NODE_PROFILE   production (default) or test: a test node listens on loopback only and
#                  runs its own sshd on HW_SSH_PORT, leaving the system's sshd alone
#   PANEL_PUBKEY   the workers' public SSH key (or --panel-key FILE), authorized for root
#                  to run the node agent (every action)
#   PANEL_WEB_PUBKEY  the web processes' key (or --panel-web-key FILE): the node agent's
#                  file and log actions only
#   HW_SSH_PORT    SSH port the panel uses [22; 2222 on a test node]
#   NODE_PARTS     only run parts whose names start with one of these prefixes ("10 20 30")
#
# Run as root. Exits non-zero with the failing part's name when a part fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
while [ $# -gt 0 ]; do
  case $1 in
    --profile) export NODE_PROFILE=$2; shift 2 ;;
    --panel-key) PANEL_PUBKEY=$(cat "$2"); export PANEL_PUBKEY; shift 2 ;;
    --panel-web-key) PANEL_WEB_PUBKEY=$(cat "$2"); export PANEL_WEB_PUBKEY; shift 2 ;;
    --parts) export NODE_PARTS=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bootstrap: run as root" >&2; exit 1; }
export NODE_PROFILE=${NODE_PROFILE:-production}
case $NODE_PROFILE in production|test) ;; *) echo "bootstrap: bad profile $NODE_PROFILE" >&2; exit 2 ;; esac
export HW_NODE_LIB=$here/lib.sh

for part in "$here"/parts/*.sh; do
  name=$(basename "$part")
  if [ -n "${NODE_PARTS:-}" ]; then
    wanted=no
    for prefix in $NODE_PARTS; do [[ $name == "$prefix"* ]] && wanted=yes; done
    [ $wanted = yes ] || continue
  fi
  echo "== $name"
  if ! bash "$part"; then
    echo "bootstrap: part $name failed" >&2
    exit 1
  fi
done
echo "bootstrap: node ready ($NODE_PROFILE)"
