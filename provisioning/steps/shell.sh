# Shell functions the hosting steps call on a node. Sent once per remote shell.
hw_write() { printf '%s' "$2" >"$1"; }

hw_systemd() { [ -d /run/systemd/system ]; }

hw_cfg_test() {
  case $1 in
    nginx) nginx -t -q ;;
    fpm) php-fpm8.2 -t ;;
  esac
}

# Start a daemon without handing it the configuration lock (fd 9) or the step's output
# files: a daemon keeping fd 9 open would hold the lock for as long as it runs.
hw_daemon() { "$@" 9>&- </dev/null >/dev/null 2>&1; }

hw_cfg_reload() {
  case $1 in
    nginx)
      if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
        hw_nginx_reload
      elif hw_systemd; then systemctl restart nginx
      else hw_daemon nginx; fi ;;
    fpm)
      if hw_systemd; then systemctl reload-or-restart php8.2-fpm
      else
        # The master re-executes itself on USR2 and writes its pid file anew: while an earlier
        # reload is under way the file is missing for a moment. Wait for it before concluding
        # that PHP-FPM is down, and read the pid once.
        local pid="" i
        for i in $(seq 60); do
          pid=$(cat /run/php/php8.2-fpm.pid 2>/dev/null || true)
          [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && break
          pid=""
          sleep 0.05
        done
        if [ -n "$pid" ]; then kill -USR2 "$pid"
        else mkdir -p /run/php; hw_daemon php-fpm8.2 -D; fi
      fi ;;
  esac
}

# nginx reloads asynchronously: wait until the old workers stopped taking requests, so the
# new configuration is what answers once the step reports success.
hw_nginx_reload() {
  local master old p i busy
  master=$(cat /run/nginx.pid)
  old=$(pgrep -P "$master" -f '^nginx: worker process$' || true)
  if hw_systemd; then systemctl reload nginx; else nginx -s reload; fi || return $?
  for i in $(seq 200); do
    busy=0
    for p in $old; do
      [ "$(ps -o args= -p "$p" 2>/dev/null)" = "nginx: worker process" ] && busy=1
    done
    [ $busy = 0 ] && return 0
    sleep 0.025
  done
  echo "nginx did not finish reloading" >&2; return 75
}

# hw_cfg KIND PATH [CONTENT]: stage a config file, check the whole configuration, and only
# then reload; without CONTENT the file is removed the same way. When the check fails the
# previous file is put back and the running server never sees the bad configuration.
hw_cfg() {
  local kind=$1 path=$2 had=0
  mkdir -p /run/hostwright
  exec 9>"/run/hostwright/$kind.lock"
  if ! flock -w 60 9; then
    echo "another change to the $kind configuration is in progress" >&2
    exec 9>&-; return 75
  fi
  [ -e "$path" ] && had=1
  if [ $# -ge 3 ]; then
    if [ $had = 1 ] && printf '%s' "$3" | cmp -s - "$path"; then exec 9>&-; return 0; fi
    [ $had = 1 ] && cp -p "$path" "$path.hwold"
    printf '%s' "$3" >"$path.hwnew" && chmod 0644 "$path.hwnew" && mv -f "$path.hwnew" "$path" \
      || { exec 9>&-; return 1; }
  else
    [ $had = 1 ] || { exec 9>&-; return 0; }
    mv -f "$path" "$path.hwold"
  fi
  if ! hw_cfg_test "$kind" >"$HW_D/cfg" 2>&1; then
    cat "$HW_D/cfg" >&2
    if [ $had = 1 ]; then mv -f "$path.hwold" "$path"; else rm -f "$path"; fi
    echo "the $kind configuration check failed; the previous configuration stays live" >&2
    exec 9>&-; return 65
  fi
  rm -f "$path.hwold"
  hw_cfg_reload "$kind"; local rc=$?
  exec 9>&-; return $rc
}

# hw_wait_socket PATH present|absent: PHP-FPM reloads asynchronously.
hw_wait_socket() {
  local i
  for i in $(seq 100); do
    if [ "$2" = present ]; then [ -S "$1" ] && return 0; else [ -S "$1" ] || return 0; fi
    sleep 0.05
  done
  echo "socket $1 did not become $2" >&2; return 75
}

# hw_fpm_settle SOCKET CONF: wait until PHP-FPM serves the pool exactly when CONF exists.
# A reload that raced another one (USR2 while the master re-executes) can leave the old
# state: reload once more under the lock, and drop a socket file no pool uses any more.
hw_fpm_settle() {
  local want=absent
  [ -e "$2" ] && want=present
  hw_wait_socket "$1" "$want" 2>/dev/null && return 0
  exec 9>"/run/hostwright/fpm.lock"
  flock -w 60 9 || { exec 9>&-; return 75; }
  hw_cfg_reload fpm; exec 9>&-
  hw_wait_socket "$1" "$want" 2>/dev/null && return 0
  if [ "$want" = absent ]; then rm -f "$1"; return 0; fi
  echo "PHP-FPM did not start the pool for $1" >&2; return 75
}

# cgroup limits for one account: v2 (unified) or v1 (cpu, memory, pids controllers).
hw_cg_limits() {
  local user=$1 quota=$2 mem=$3 pids=$4 d
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    d=/sys/fs/cgroup/hostwright
    mkdir -p "$d/$user"
    echo "+cpu +memory +pids" >"$d/cgroup.subtree_control" 2>/dev/null || true
    hw_write "$d/$user/cpu.max" "$quota 100000"
    hw_write "$d/$user/memory.max" "$mem"
    hw_write "$d/$user/pids.max" "$pids"
  elif [ -d /sys/fs/cgroup/pids ]; then
    mkdir -p "/sys/fs/cgroup/cpu/hostwright/$user" "/sys/fs/cgroup/memory/hostwright/$user" \
      "/sys/fs/cgroup/pids/hostwright/$user"
    # cpuacct only counts the account's CPU time (for its usage figures); no limits there.
    if [ -d /sys/fs/cgroup/cpuacct ]; then
      mkdir -p "/sys/fs/cgroup/cpuacct/hostwright/$user"
      chown "$user" "/sys/fs/cgroup/cpuacct/hostwright/$user/cgroup.procs"
    fi
    hw_write "/sys/fs/cgroup/cpu/hostwright/$user/cpu.cfs_period_us" 100000
    hw_write "/sys/fs/cgroup/cpu/hostwright/$user/cpu.cfs_quota_us" "$quota"
    hw_write "/sys/fs/cgroup/memory/hostwright/$user/memory.limit_in_bytes" "$mem"
    hw_write "/sys/fs/cgroup/pids/hostwright/$user/pids.max" "$pids"
    # The account may move its own processes in (PHP-FPM workers do on their first
    # request); it cannot change the limits or move anything out to an unlimited group.
    chown "$user" "/sys/fs/cgroup/cpu/hostwright/$user/cgroup.procs" \
      "/sys/fs/cgroup/memory/hostwright/$user/cgroup.procs" \
      "/sys/fs/cgroup/pids/hostwright/$user/cgroup.procs"
  else
    echo "no cgroups on this node: limits not applied" >&2
  fi
  hw_cg_attach "$user"
}

hw_cg_dirs() {
  local user=$1
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    [ -d "/sys/fs/cgroup/hostwright/$user" ] && echo "/sys/fs/cgroup/hostwright/$user"
  else
    local c
    for c in cpu cpuacct memory pids; do
      [ -d "/sys/fs/cgroup/$c/hostwright/$user" ] && echo "/sys/fs/cgroup/$c/hostwright/$user"
    done
  fi
  return 0
}

# Move the account's running processes into its cgroups (new ones inherit them).
hw_cg_attach() {
  local d p
  for d in $(hw_cg_dirs "$1"); do
    for p in $(pgrep -u "$1"); do echo "$p" >"$d/cgroup.procs" 2>/dev/null || true; done
  done
  return 0
}

hw_cg_remove() {
  local d p
  for d in $(hw_cg_dirs "$1"); do
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do echo "$p" >"$d/../../cgroup.procs" 2>/dev/null; done
    rmdir "$d" 2>/dev/null || true
  done
  [ -z "$(hw_cg_dirs "$1")" ]
}

# hw_sql SQL: statements for the local MariaDB as root over its socket.
hw_sql() { mysql --protocol=socket -uroot -N -B -e "$1"; }
