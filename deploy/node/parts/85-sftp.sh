#!/usr/bin/env bash
# Node part: chrooted SFTP for hosting accounts, served by an sshd instance of its own.
#
# Customers log in with their account's Linux user (password or key) and are jailed in their own
# home: the chroot is /home/<user> (root-owned 0751, made by the node agent), so "/" is their
# home and they see neither /home nor any other account's name; no shell, no forwarding. Accounts are let in by membership of the group
# hwsftp (provisioning/resources/sftp.py adds and removes them); their public keys live in
# /etc/hostwright/sftp/keys/<user>, written by the panel. An expired (suspended) account is
# refused by PAM.
#
# Environment: SFTP_PORT [2022], SFTP_LISTEN [127.0.0.1 on a test node, 0.0.0.0 otherwise].
# Idempotent: the daemon is restarted only when its configuration changed.
set -euo pipefail
source "${HW_NODE_LIB:-$(dirname "${BASH_SOURCE[0]}")/../lib.sh}"

test_node=no
if [ "${NODE_ACME:-}" = pebble ] || [ "${NODE_PROFILE:-}" = test ]; then test_node=yes; fi
: "${SFTP_PORT:=2022}"
if [ "$test_node" = yes ]; then : "${SFTP_LISTEN:=127.0.0.1}"; else : "${SFTP_LISTEN:=0.0.0.0}"; fi
[[ $SFTP_PORT =~ ^[0-9]{1,5}$ ]] || { echo "85-sftp: bad port $SFTP_PORT" >&2; exit 1; }
[[ $SFTP_LISTEN =~ ^[0-9a-fA-F.:]+$ ]] || { echo "85-sftp: bad address $SFTP_LISTEN" >&2; exit 1; }

dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q 'install ok installed' || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q openssh-server >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q openssh-server >/dev/null; }
}
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null

getent group hwsftp >/dev/null || groupadd --system hwsftp
# The chroot and every directory above it must belong to root and not be writable by others.
chown root:root /home
chmod 0755 /home
install -d -m 0755 /etc/hostwright /etc/hostwright/sftp /etc/hostwright/sftp/keys /run/sshd
install -d -m 0755 /run/hostwright

CONF=/etc/hostwright/sftp/sshd_config
PIDFILE=/run/hostwright/sshd-sftp.pid
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Managed by Hostwright (deploy/node/parts/85-sftp.sh): SFTP for hosting accounts.
Port $SFTP_PORT
ListenAddress $SFTP_LISTEN
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_rsa_key
PidFile $PIDFILE
UsePAM yes
PermitRootLogin no
AllowGroups hwsftp
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile /etc/hostwright/sftp/keys/%u
ChrootDirectory %h
ForceCommand internal-sftp -d / -u 0022
Subsystem sftp internal-sftp
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
PermitTunnel no
X11Forwarding no
MaxAuthTries 4
LoginGraceTime 30
EOF
changed=no
if ! cmp -s "$new_conf" "$CONF"; then
  install -m 0644 "$new_conf" "$CONF"
  changed=yes
fi
/usr/sbin/sshd -t -f "$CONF"

port_open() { (exec 3<>"/dev/tcp/${SFTP_LISTEN/0.0.0.0/127.0.0.1}/$1") 2>/dev/null; }
if [ -d /run/systemd/system ]; then
  cat >/etc/systemd/system/hostwright-sftp.service.new <<EOF
[Unit]
Description=SFTP for hosting accounts (Hostwright)
After=network.target

[Service]
ExecStartPre=/usr/sbin/sshd -t -f $CONF
ExecStart=/usr/sbin/sshd -D -f $CONF
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
  if ! cmp -s /etc/systemd/system/hostwright-sftp.service.new /etc/systemd/system/hostwright-sftp.service; then
    mv -f /etc/systemd/system/hostwright-sftp.service.new /etc/systemd/system/hostwright-sftp.service
    systemctl daemon-reload
  else
    rm -f /etc/systemd/system/hostwright-sftp.service.new
  fi
  systemctl enable -q hostwright-sftp
  if [ "$changed" = yes ]; then systemctl restart hostwright-sftp; else systemctl start hostwright-sftp; fi
else
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    # SIGHUP makes sshd re-execute itself with the new configuration.
    [ "$changed" = no ] || kill -HUP "$(cat "$PIDFILE")"
  else
    hw_daemon sftp /usr/sbin/sshd -f "$CONF"
  fi
fi
for _ in $(seq 100); do port_open "$SFTP_PORT" && break; sleep 0.1; done
port_open "$SFTP_PORT" || { echo "85-sftp: SFTP does not answer on $SFTP_PORT" >&2; exit 1; }
echo "85-sftp: SFTP on $SFTP_LISTEN:$SFTP_PORT (chroot: each account's home, group hwsftp)"
