#!/usr/bin/env bash
# Node part: SSH for the panel. The panel logs in as root with its own keys, kept apart from
# root's personal keys in /etc/hostwright/authorized_keys/root, and each key runs only the node
# agent (15-agent.sh): PANEL_PUBKEY for the workers (every action), PANEL_WEB_PUBKEY for the
# web processes (file and log actions only). Passwords are never accepted.
#
# production: a drop-in for the system's sshd (port HW_SSH_PORT, default 22), reloaded. Only
#             the groups in SSH_ALLOW_GROUPS (default: root, sudo and hwssh, the hosting
#             accounts whose plan grants a shell) may log in.
# test:       a separate sshd on 127.0.0.1:HW_SSH_PORT (default 2222) with its own config, so
#             the machine's own sshd is left alone.
set -euo pipefail
source "$HW_NODE_LIB"

if hw_test_node; then : "${HW_SSH_PORT:=2222}"; else : "${HW_SSH_PORT:=22}"; fi
[[ $HW_SSH_PORT =~ ^[0-9]{1,5}$ ]] || { echo "20-sshd: bad port $HW_SSH_PORT" >&2; exit 1; }
: "${SSH_ALLOW_GROUPS:=root sudo hwssh}"
[[ $SSH_ALLOW_GROUPS =~ ^[a-z_][a-z0-9_-]*( [a-z_][a-z0-9_-]*)*$ ]] \
  || { echo "20-sshd: bad SSH_ALLOW_GROUPS $SSH_ALLOW_GROUPS" >&2; exit 1; }

mkdir -p /run/sshd
ssh-keygen -A >/dev/null

keys=/etc/hostwright/authorized_keys/root
install -d -m 0700 /etc/hostwright/authorized_keys
[ -e "$keys" ] || install -m 0600 /dev/null "$keys"
key_re='^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [A-Za-z0-9@._:+-]*)?$'

# authorize_key KEY TIER: the key may run the node agent for TIER and nothing else: sshd runs
# the forced command whatever the client asks for, with no pty and no forwarding. A line for
# the same key with other options is replaced.
authorize_key() {
  local key=$1 tier=$2 blob line
  key=$(printf '%s' "$key" | head -n1)
  if ! [[ $key =~ $key_re ]]; then
    echo "20-sshd: the $tier key is not an SSH public key" >&2; exit 1
  fi
  blob=$(printf '%s' "$key" | cut -d' ' -f2)
  line="restrict,command=\"/usr/local/sbin/hostwright-agent --tier $tier\" $key"
  grep -qxF "$line" "$keys" && return 0
  grep -vF " $blob" "$keys" >"$keys.new" || true
  printf '%s\n' "$line" >>"$keys.new"
  chmod 0600 "$keys.new" && mv -f "$keys.new" "$keys"
}
[ -z "${PANEL_PUBKEY:-}" ] || authorize_key "$PANEL_PUBKEY" worker
# The web processes' key reaches only the per-account file and log actions.
[ -z "${PANEL_WEB_PUBKEY:-}" ] || authorize_key "$PANEL_WEB_PUBKEY" web

# Hosting accounts whose plan grants no shell are in the group hwnologin (the node agent keeps
# the memberships): sshd turns them away before anything runs, so no forwarding either.
getent group hwnologin >/dev/null || groupadd --system hwnologin
getent group hwssh >/dev/null || groupadd --system hwssh

common="PermitRootLogin prohibit-password
DenyGroups hwnologin
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys /etc/hostwright/authorized_keys/%u
# The panel keeps one connection per worker process.
MaxStartups 200:30:400
MaxSessions 64
ClientAliveInterval 60"

if hw_test_node; then
  conf=/etc/hostwright/sshd_config
  pidfile=/run/hostwright/sshd-$HW_SSH_PORT.pid
  changed=$(hw_install_file "$conf" 0600 <<CONF
# Managed by Hostwright (deploy/node/parts/20-sshd.sh): the test node's own sshd.
Port $HW_SSH_PORT
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_rsa_key
PidFile $pidfile
UsePAM no
# Only the panel logs in here.
AllowGroups root
$common
Subsystem sftp internal-sftp
CONF
)
  /usr/sbin/sshd -t -f "$conf"
  if hw_pid_alive "$pidfile"; then
    [ -z "$changed" ] || kill -HUP "$(cat "$pidfile")"
  else
    hw_daemon sshd /usr/sbin/sshd -f "$conf"
  fi
  hw_wait_port "$HW_SSH_PORT" || { echo "20-sshd: sshd does not answer on $HW_SSH_PORT" >&2; exit 1; }
else
  hw_install_file /etc/ssh/sshd_config.d/hostwright.conf 0644 >/dev/null <<CONF
# Managed by Hostwright (deploy/node/parts/20-sshd.sh).
Port $HW_SSH_PORT
AllowGroups $SSH_ALLOW_GROUPS
$common
CONF
  /usr/sbin/sshd -t
  if hw_have_systemd; then
    systemctl enable --now ssh >/dev/null 2>&1 || true
    systemctl reload ssh
  elif hw_pid_alive /run/sshd.pid; then
    kill -HUP "$(cat /run/sshd.pid)"
  else
    hw_daemon sshd /usr/sbin/sshd
  fi
fi
echo "20-sshd: sshd answers on port $HW_SSH_PORT"
