"""The file manager's access to an account's files on its node.

Every action is one request to the node agent's file actions (``deploy/node/agent/hwagent/
files.py``) over the web processes' own SSH key (``PROVISIONING_WEB_SSH_KEY``), which nodes let
run those actions and the log tails only. On the node each action runs as the account's own
Linux user, so the node's permissions confine it as well as our checks do.

Confinement, in two layers:

1. ``clean_path`` refuses, before anything is sent, paths that are absolute, contain ``..``,
   NUL or control characters, or are too long. A path is always relative to the home.
2. On the node, the agent checks the path again and refuses any whose real location leaves the
   home (a symlinked folder pointing elsewhere). Actions that follow the final name (read,
   write, list, chmod) also resolve it; delete and rename act on a symlink itself, never on
   what it points to.

Files above ``MAX_DOWNLOAD`` are for SFTP.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from provisioning import ssh, validators
from provisioning.errors import StepError
from provisioning.models import Service

MAX_PATH = 1024
MAX_NAME = 255
MAX_UPLOAD = 8 * 1024 * 1024
MAX_DOWNLOAD = 2 * 1024 * 1024
MAX_EDIT = 512 * 1024
PAGE = 200

_MODE = re.compile(r"[0-7]{3,4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FileError(Exception):
    """A file action refused or failed, with a message for the customer."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    kind: str  # "dir", "file", "link", "other"
    mode: str
    size: int
    modified: datetime

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def is_text(self) -> bool:
        return self.kind == "file" and self.size <= MAX_EDIT


def clean_path(value: object, *, allow_root: bool = True) -> str:
    """A path relative to the account's home, or a refusal. "" means the home itself."""
    if not isinstance(value, str):
        raise FileError("That is not a path.")
    if "\x00" in value or _CONTROL.search(value):
        raise FileError("Paths cannot contain control characters.")
    if len(value) > MAX_PATH:
        raise FileError(f"Paths are at most {MAX_PATH} characters.")
    if value.startswith("/") or value.startswith("~"):
        raise FileError("Paths are relative to your home folder.")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise FileError("Paths cannot go up a folder with '..'.")
        if len(part.encode()) > MAX_NAME:
            raise FileError(f"Names are at most {MAX_NAME} bytes.")
    path = "/".join(parts)
    if not path and not allow_root:
        raise FileError("Choose a file or folder inside your home folder.")
    return path


def clean_name(value: object) -> str:
    """One file or folder name (no slashes)."""
    name = clean_path(value, allow_root=False)
    if "/" in name:
        raise FileError("A name cannot contain '/'.")
    return name


def clean_mode(value: object) -> str:
    if not isinstance(value, str) or not _MODE.fullmatch(value.strip()):
        raise FileError("Use octal permissions such as 644 or 755.")
    return value.strip()


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _call(service: Service, name: str, **args: Any) -> dict[str, Any]:
    """One agent action for the account, as its user; its data, or a ``FileError``."""
    from provisioning.nodes import node_target

    if service.node is None or service.state not in (Service.State.ACTIVE,):
        raise FileError("Files can be managed while the account is active.")
    user = validators.validate_username(service.username)
    try:
        result = ssh.call(
            node_target(service.node),
            [ssh.action(name, user=user, **args)],
            key_path=settings.PROVISIONING_WEB_SSH_KEY,
            timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
            tier="web",
        )
    except StepError:
        raise FileError("The server did not answer. Try again in a moment.") from None
    failure = result.failure()
    if failure is not None:
        text = str(failure[1].get("message") or "the server could not do that")
        raise FileError(text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))
    return result.results[0].data


def list_dir(*, service: Service, path: str, offset: int = 0) -> tuple[list[Entry], int | None]:
    """One page of a folder (folders first, then by name) and the offset of the next page."""
    data = _call(service, "files.list", path=path, offset=max(0, offset), limit=PAGE)
    entries = [
        Entry(
            name=e["name"],
            path=join(path, e["name"]),
            kind=e["kind"],
            mode=e["mode"],
            size=int(e["size"]),
            modified=datetime.fromtimestamp(float(e["mtime"]), tz=UTC),
        )
        for e in data.get("entries", [])
    ]
    more = data.get("more")
    return entries, more if isinstance(more, int) else None


def stat(*, service: Service, path: str) -> tuple[str, str, int]:
    """(kind, mode, size) of one path."""
    data = _call(service, "files.stat", path=path)
    return str(data["kind"]), str(data["mode"]), int(data["size"])


def read_file(*, service: Service, path: str, limit: int = MAX_DOWNLOAD) -> bytes:
    kind, _mode, size = stat(service=service, path=path)
    if kind != "file":
        raise FileError("Only files can be opened.")
    if size > limit:
        raise FileError(
            f"This file is {size // 1024} KB; files above {limit // 1024} KB are downloaded "
            "over SFTP."
        )
    data = _call(service, "files.read", path=path, offset=0, length=max(1, limit))
    return base64.b64decode(data["data"])


def write_file(*, service: Service, path: str, data: bytes) -> None:
    if len(data) > MAX_UPLOAD:
        raise FileError(f"Files are at most {MAX_UPLOAD // (1024 * 1024)} MB here; use SFTP.")
    _call(
        service,
        "files.write",
        path=clean_path(path, allow_root=False),
        data=base64.b64encode(data).decode(),
    )


def make_dir(*, service: Service, path: str) -> None:
    _call(service, "files.mkdir", path=clean_path(path, allow_root=False))


def make_file(*, service: Service, path: str) -> None:
    _call(service, "files.touch", path=clean_path(path, allow_root=False))


def rename(*, service: Service, path: str, new_path: str) -> None:
    _call(
        service,
        "files.rename",
        path=clean_path(path, allow_root=False),
        new_path=clean_path(new_path, allow_root=False),
    )


def delete(*, service: Service, path: str) -> None:
    _call(service, "files.delete", path=clean_path(path, allow_root=False))


LOG_KINDS = ("access", "error", "cron")
LOG_TAIL_BYTES = 16384


def log_tail(*, service: Service, kind: str) -> str:
    """The last lines of the account's nginx access or error log, or of its cron log (the
    agent reads them as root, opening no link; the path is built from the validated account
    name)."""
    if kind not in LOG_KINDS:
        raise FileError("There is no such log.")
    if service.node is None or service.state != Service.State.ACTIVE:
        raise FileError("Logs can be read while the account is active.")
    return str(_call(service, "logs.tail", kind=kind, max_bytes=LOG_TAIL_BYTES).get("text", ""))


def chmod(*, service: Service, path: str, mode: str) -> None:
    _call(service, "files.chmod", path=clean_path(path, allow_root=False), mode=clean_mode(mode))
