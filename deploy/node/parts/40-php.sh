#!/usr/bin/env bash
# Node part: PHP-FPM 8.2. The panel adds one pool per account (pool.d/hw-<user>.conf, running
# as that user) and reloads with USR2 after php-fpm -t passes.
set -euo pipefail
source "$HW_NODE_LIB"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# WordPress for the one-click installer (provisioning/resources/wordpress.py copies it from
# /usr/share/wordpress). Debian's package would pull Apache in through its recommendations and
# its "libapache2-mod-php | php" dependency: naming php (satisfied by php8.2-fpm) keeps it out.
hw_apt_install --no-recommends php wordpress wordpress-theme-twentytwentythree
install -d -m 0755 /run/php /usr/local/lib/hostwright
# Prepended to every account's PHP: a worker of the shared PHP-FPM master moves itself into
# its account's cgroups (cpu, memory, pids) on its first request.
hw_install_file /usr/local/lib/hostwright/cgroup-join.php 0644 >/dev/null <<'PHP'
<?php
// Managed by Hostwright (deploy/node/parts/40-php.sh).
(static function (): void {
    $current = @file_get_contents('/proc/self/cgroup');
    if ($current === false || str_contains($current, ':/hostwright/')) {
        return;
    }
    $user = (posix_getpwuid(posix_geteuid()) ?: [])['name'] ?? '';
    if (!preg_match('/^[a-z][a-z0-9]{2,31}$/', $user)) {
        return;
    }
    foreach (['cpu', 'cpuacct', 'memory', 'pids'] as $controller) {
        $procs = "/sys/fs/cgroup/$controller/hostwright/$user/cgroup.procs";
        if (is_writable($procs)) {
            @file_put_contents($procs, (string) getmypid());
        }
    }
})();
PHP
# Sites' mail: mail() hands the message to the node's wrapper, which sends it over SMTP to
# 127.0.0.1:25, where Postfix's mail filter knows the account by the socket's owner (hosting
# accounts may not run Postfix's own sendmail, see 80-mail.sh). A system setting: no pool, no
# .user.ini and no ini_set() can change it.
hw_install_file /usr/local/lib/hostwright/site-sendmail 0755 \
  <"$here/../mail/site-sendmail.py" >/dev/null
ini_changed=""
for sapi in fpm cli; do
  changed=$(hw_install_file "/etc/php/8.2/$sapi/conf.d/90-hostwright-mail.ini" 0644 <<'INI'
; Managed by Hostwright (deploy/node/parts/40-php.sh).
sendmail_path = "/usr/local/lib/hostwright/site-sendmail -t -i"
INI
  )
  [ "$sapi" = cli ] || ini_changed=$changed
done
# A reload (USR2, after every pool change) lets requests in flight finish, for up to 10 s,
# instead of killing them: Debian's default (0) cut every running page short on each change.
conf=/etc/php/8.2/fpm/php-fpm.conf
if ! grep -qx 'process_control_timeout = 10s' "$conf"; then
  sed -i -E 's/^;?process_control_timeout = .*/process_control_timeout = 10s/' "$conf"
  grep -qx 'process_control_timeout = 10s' "$conf" ||
    sed -i '/^\[global\]/a process_control_timeout = 10s' "$conf"
fi
php-fpm8.2 -t 2>/dev/null || { php-fpm8.2 -t; exit 1; }
pidfile=/run/php/php8.2-fpm.pid
# A reload (USR2) in progress replaces the master: give it a moment before starting one.
for _ in $(seq 30); do hw_pid_alive "$pidfile" && break; sleep 0.1; done
if hw_have_systemd; then
  systemctl enable --now php8.2-fpm >/dev/null 2>&1 || true
elif ! hw_pid_alive "$pidfile"; then
  hw_daemon php-fpm php-fpm8.2 -D || true
fi
for _ in $(seq 100); do hw_pid_alive "$pidfile" && break; sleep 0.1; done
hw_pid_alive "$pidfile" || { echo "40-php: php-fpm8.2 is not running" >&2; exit 1; }
# A changed php.ini setting is read by a reload (the master re-executes).
if [ -n "$ini_changed" ]; then
  if hw_have_systemd; then systemctl reload php8.2-fpm; else kill -USR2 "$(cat "$pidfile")"; fi
fi
echo "40-php: php-fpm8.2 running"
