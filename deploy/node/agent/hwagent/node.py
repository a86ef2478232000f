"""The node as a whole: is the agent there, and is the node prepared for hosting accounts."""

from __future__ import annotations

import os
import shutil
from typing import Any

from hwagent import system
from hwagent.registry import action

VERSION = 1


@action("node.ping", web=True)
def ping() -> dict[str, Any]:
    """Answers with the agent's protocol version; changes nothing."""
    return {"changed": False, "version": VERSION}


def _ok(argv: list[str]) -> bool:
    try:
        return system.run(argv, check=False, timeout=20).returncode == 0
    except Exception:
        return False


@action("node.check")
def check() -> dict[str, Any]:
    """What the node lacks to host accounts (``missing``: labels), its free space in /home
    and its load; changes nothing."""
    probes: list[tuple[str, bool]] = [
        # Installed, not "its configuration checks out": a broken file is for the step that
        # changes the configuration to report (and it keeps the previous one live).
        ("nginx", shutil.which("nginx") is not None),
        ("nginx sites directory", os.path.isdir("/etc/nginx/hostwright/sites")),
        ("suspended page", os.path.isfile("/var/lib/hostwright/suspended/index.html")),
        ("PHP-FPM 8.2", shutil.which("php-fpm8.2") is not None),
        ("PHP-FPM running", os.path.exists("/run/php/php8.2-fpm.pid")),
        ("PHP cgroup helper", os.path.isfile("/usr/local/lib/hostwright/cgroup-join.php")),
        ("MariaDB answering", _ok(["mysqladmin", "--protocol=socket", "-uroot", "ping"])),
        ("useradd", shutil.which("useradd") is not None),
        (
            "cgroups (cpu, memory, pids)",
            os.path.isfile("/sys/fs/cgroup/cgroup.controllers")
            or os.path.isdir("/sys/fs/cgroup/pids"),
        ),
    ]
    usage = shutil.disk_usage("/home")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "changed": False,
        "missing": [label for label, ok in probes if not ok],
        "free_mb": usage.free // 2**20,
        "total_mb": usage.total // 2**20,
        "load": [float(x) for x in load],
    }
