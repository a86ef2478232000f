# Helpers shared by the node parts: source "$HW_NODE_LIB".

hw_have_systemd() { [ -d /run/systemd/system ]; }

hw_test_node() { [ "${NODE_PROFILE:-production}" = test ]; }

hw_port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# hw_apt_install [--no-recommends] PKG...: install the Debian packages that are not installed
# yet (without their recommended packages when asked: the node chooses its own web server).
hw_apt_install() {
  local missing=() pkg flags=()
  if [ "${1:-}" = --no-recommends ]; then flags=(--no-install-recommends); shift; fi
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt run (unattended upgrades, a parallel bootstrap) instead of failing.
  flags+=(-o DPkg::Lock::Timeout=300)
  apt-get install -y -q "${flags[@]}" "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null \
         && apt-get install -y -q "${flags[@]}" "${missing[@]}" >/dev/null; }
}

# hw_install_file PATH MODE < content: replace PATH only when the content differs.
# Prints "changed" when it wrote the file.
hw_install_file() {
  local path=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 0; fi
  install -D -m "$mode" "$tmp" "$path"
  rm -f "$tmp"
  echo changed
}

hw_pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

hw_wait_port() {
  local i
  for i in $(seq 100); do hw_port_open "$1" "${2:-127.0.0.1}" && return 0; sleep 0.1; done
  return 1
}

# hw_daemon NAME CMD...: start a daemon with its standard streams on /var/log/hostwright/NAME.log.
# A daemon that kept the bootstrap's stdout or stderr would hold the pipe of whoever runs the
# bootstrap (a test harness, `| tee`) open long after the bootstrap exits.
hw_daemon() {
  local log=/var/log/hostwright/$1.log
  shift
  install -d -m 0755 /var/log/hostwright
  "$@" </dev/null >>"$log" 2>&1 || {
    echo "could not start $1; the end of $log:" >&2
    tail -n 5 "$log" >&2
    return 1
  }
}
