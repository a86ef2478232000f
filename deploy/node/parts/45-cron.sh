#!/usr/bin/env bash
# Node part: what customers' cron jobs need (the node agent's cron.* actions, hwagent/cron.py).
#
# With systemd each job is a timer and a service in the account's slice: nothing to install.
# Without systemd the jobs are lines of the account's crontab, run by Debian's cron daemon.
# Only root may use crontab(1): an account's jobs are the panel's, counted against its plan.
# Idempotent.
set -euo pipefail
source "$HW_NODE_LIB"

install -d -m 0755 /etc/hostwright/cron /var/log/hostwright/cron /usr/local/lib/hostwright
if hw_have_systemd; then
  echo "45-cron: jobs are systemd timers"
  exit 0
fi
hw_apt_install cron
hw_install_file /etc/cron.allow 0644 >/dev/null <<'EOF_ALLOW'
root
EOF_ALLOW
if ! pgrep -x cron >/dev/null; then
  hw_daemon cron cron
fi
pgrep -x cron >/dev/null || { echo "45-cron: cron is not running" >&2; exit 1; }
echo "45-cron: cron running"
