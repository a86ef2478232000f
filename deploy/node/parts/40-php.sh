#!/usr/bin/env bash
# Node part: PHP-FPM 8.2. The panel adds one pool per account (pool.d/hw-<user>.conf, running
# as that user) and reloads with USR2 after php-fpm -t passes.
set -euo pipefail
source "$HW_NODE_LIB"

install -d -m 0755 /run/php
php-fpm8.2 -t 2>/dev/null || { php-fpm8.2 -t; exit 1; }
pidfile=/run/php/php8.2-fpm.pid
# A reload (USR2) in progress replaces the master: give it a moment before starting one.
for _ in $(seq 30); do hw_pid_alive "$pidfile" && break; sleep 0.1; done
if hw_have_systemd; then
  systemctl enable --now php8.2-fpm >/dev/null 2>&1 || true
elif ! hw_pid_alive "$pidfile"; then
  php-fpm8.2 -D </dev/null >/dev/null 2>&1 || true
fi
for _ in $(seq 100); do hw_pid_alive "$pidfile" && break; sleep 0.1; done
hw_pid_alive "$pidfile" || { echo "40-php: php-fpm8.2 is not running" >&2; exit 1; }
echo "40-php: php-fpm8.2 running"
