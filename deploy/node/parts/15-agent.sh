#!/usr/bin/env bash
# Node part: the node agent, the only program the panel's SSH keys may run (see 20-sshd.sh).
#
# Installs deploy/node/agent/hwagent into /usr/local/lib/hostwright/agent (root-owned, not
# writable by anyone else) and the entry point /usr/local/sbin/hostwright-agent, which runs it
# with Debian's python3 in isolated mode (-I: no PYTHONPATH, no user site, no current folder).
# The agent needs only the standard library and Debian's python3-idna.
#
# /proc is mounted with hidepid=invisible: an account sees its own processes only. Daemons that
# must see every process join the group hwproc (the gid= of the mount).
# Idempotent: files are replaced only when they differ.
set -euo pipefail
source "$HW_NODE_LIB"

hw_apt_install python3 python3-idna

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$here/agent/hwagent
dest=/usr/local/lib/hostwright/agent
install -d -m 0755 /usr/local/lib/hostwright "$dest"
if hw_test_node; then
  # A test node is shared by several checkouts at once: each brings its modules and none
  # removes another's (a module absent here may be one a newer checkout's tests use now).
  install -d -m 0755 "$dest/hwagent"
  for f in "$src"/*.py; do
    cmp -s "$f" "$dest/hwagent/$(basename "$f")" && continue
    install -m 0644 "$f" "$dest/hwagent/.$(basename "$f").new"
    mv -f "$dest/hwagent/.$(basename "$f").new" "$dest/hwagent/$(basename "$f")"
  done
else
  new=$(mktemp -d /usr/local/lib/hostwright/.agent-new.XXXXXXXX)
  trap 'rm -rf "$new"' EXIT
  install -d -m 0755 "$new/hwagent"
  install -m 0644 "$src"/*.py "$new/hwagent/"
  if ! diff -rq --exclude=__pycache__ "$new/hwagent" "$dest/hwagent" >/dev/null 2>&1; then
    # Swap the whole package at once: a running agent keeps the modules it loaded.
    rm -rf "$dest/hwagent.old"
    [ -d "$dest/hwagent" ] && mv "$dest/hwagent" "$dest/hwagent.old"
    mv "$new/hwagent" "$dest/hwagent"
    rm -rf "$dest/hwagent.old"
    echo "15-agent: agent installed in $dest"
  fi
fi
chown -R root:root "$dest"

hw_install_file /usr/local/sbin/hostwright-agent 0755 >/dev/null <<'PY'
#!/usr/bin/python3 -IB
# Hostwright node agent (deploy/node/parts/15-agent.sh): hostwright-agent --tier worker|web
import sys

sys.path.insert(0, "/usr/local/lib/hostwright/agent")
from hwagent.__main__ import main  # noqa: E402

sys.exit(main())
PY
install -d -m 0700 /run/hostwright/agent

# /proc: every account sees only its own processes.
getent group hwproc >/dev/null || groupadd --system hwproc
gid=$(getent group hwproc | cut -d: -f3)
if ! grep -qE "^proc /proc proc .*hidepid=(2|invisible)" /proc/mounts; then
  mount -o "remount,hidepid=invisible,gid=$gid" /proc
fi
if hw_have_systemd; then
  # systemd mounts /proc itself; the option is applied again at every boot by this unit.
  hw_install_file /etc/systemd/system/hostwright-hidepid.service 0644 >/dev/null <<UNIT
[Unit]
Description=Hide other users' processes in /proc (Hostwright)
DefaultDependencies=no
After=proc.mount systemd-remount-fs.service
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/mount -o remount,hidepid=invisible,gid=$gid /proc
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
UNIT
  systemctl daemon-reload
  systemctl enable -q hostwright-hidepid.service
fi
grep -qE "^proc /proc proc .*hidepid=(2|invisible)" /proc/mounts \
  || { echo "15-agent: /proc could not be mounted with hidepid" >&2; exit 1; }
echo "15-agent: agent ready, /proc hides other users' processes"
