"""Log tails for the panel, open to the web tier.

An account's nginx logs (``/var/log/nginx/hw-<user>.{access,error}.log``) belong to nginx, not
to the account, so root reads them: the path is built from the validated account name, the
folder is root's, and the file is opened without following a link. The account's cron log
(``hwagent.cron``) is the account's file in root's folder, read the same way.
"""

from __future__ import annotations

import os
from typing import Any

from hwagent import validate
from hwagent.errors import AgentError
from hwagent.registry import action

LOG_DIR = "/var/log/nginx"
KINDS = ("access", "error", "cron")
MAX_TAIL = 256 * 1024


def log_path(user: str, kind: str) -> str:
    if kind == "cron":
        from hwagent.cron import log_path as cron_log

        return cron_log(user)
    return f"{LOG_DIR}/hw-{user}.{kind}.log"


@action("logs.tail", web=True)
def tail(*, user: str, kind: str, max_bytes: int = 16384) -> dict[str, Any]:
    """The last ``max_bytes`` of the account's access or error log, from a whole line on;
    ``""`` when the log does not exist yet."""
    user = validate.linux_user(user)
    if kind not in KINDS:
        raise AgentError("invalid", "the log is 'access', 'error' or 'cron'")
    if not 0 < max_bytes <= MAX_TAIL:
        raise AgentError("invalid", f"max_bytes is 1 to {MAX_TAIL}")
    try:
        fd = os.open(log_path(user, kind), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"changed": False, "text": ""}
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read(max_bytes)
    if start > 0 and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # the first line is cut: drop it
    return {"changed": False, "text": data.decode(errors="replace")}
