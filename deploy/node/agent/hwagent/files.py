"""The file manager's actions, open to the web tier: each runs as the account's Linux user.

Every action forks a child that drops to the account's user before it touches a path
(``safefs.as_user``), so the kernel confines it exactly as it confines the customer: a link
the customer planted can only lead where the customer could go anyway. On top of that, paths
are relative to the home (``validate.home_path``) and a path whose real location leaves the
home (a link to ``/etc``, say) is refused, so the panel never shows or changes anything outside
it. ``delete`` and ``rename`` act on a link itself, never on what it points to.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat as stat_
from typing import Any

from hwagent import safefs, validate
from hwagent.errors import AgentError
from hwagent.registry import action

MAX_READ = 4 * 1024 * 1024
MAX_WRITE = 16 * 1024 * 1024
MAX_ENTRIES = 500
_KINDS = {stat_.S_IFDIR: "dir", stat_.S_IFREG: "file", stat_.S_IFLNK: "link"}


def _leaves() -> AgentError:
    return AgentError("unsafe_path", "that path leaves the home folder")


def _under(home: str, path: str) -> bool:
    return path == home or path.startswith(home + "/")


def _real(rel: str) -> str:
    """The real location of ``rel`` (links resolved), refused when it leaves the home.
    Runs in the child, as the account's user."""
    home = os.path.realpath(os.environ["HOME"])
    real = os.path.realpath(os.path.join(home, rel) if rel else home)
    if not _under(home, real):
        raise _leaves()
    return real


def _parent_and_name(rel: str) -> tuple[str, str]:
    """The real parent folder of ``rel`` (refused outside the home) and its last name."""
    if not rel:
        raise AgentError("forbidden", "the home folder itself stays")
    head, _, name = rel.rpartition("/")
    return _real(head), name


def _entry(name: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "name": name,
        "kind": _KINDS.get(stat_.S_IFMT(st.st_mode), "other"),
        "mode": format(stat_.S_IMODE(st.st_mode), "o"),
        "size": st.st_size,
        "mtime": st.st_mtime,
    }


def _call(user: str, func: Any, *args: Any) -> Any:
    user = validate.linux_user(user)
    try:
        return safefs.as_user(user, _guard, func, *args)
    except AgentError:
        raise


def _guard(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except OSError as exc:
        raise safefs.os_error(exc) from None


def _list(rel: str, offset: int, limit: int) -> dict[str, Any]:
    real = _real(rel)
    if not os.path.isdir(real):
        raise AgentError("not_found", "no such folder")
    entries = []
    with os.scandir(real) as it:
        for e in it:
            entries.append(_entry(e.name, e.stat(follow_symlinks=False)))
    entries.sort(key=lambda e: (e["kind"] != "dir", e["name"]))
    page = entries[offset : offset + limit]
    more = offset + limit if offset + limit < len(entries) else None
    return {"entries": page, "more": more}


@action("files.list", web=True)
def list_dir(*, user: str, path: str, offset: int = 0, limit: int = 200) -> dict[str, Any]:
    """One page of a folder: folders first, then by name; ``more`` is the next offset."""
    path = validate.home_path(path)
    if offset < 0 or not 0 < limit <= MAX_ENTRIES:
        raise AgentError("invalid", f"offset must be 0 or more and limit 1 to {MAX_ENTRIES}")
    return {"changed": False, **_call(user, _list, path, offset, limit)}


def _stat(rel: str) -> dict[str, Any]:
    real = _real(rel)
    return _entry(os.path.basename(real), os.stat(real))


@action("files.stat", web=True)
def stat(*, user: str, path: str) -> dict[str, Any]:
    """Kind, mode, size and time of one path (links followed inside the home)."""
    return {"changed": False, **_call(user, _stat, validate.home_path(path))}


def _read(rel: str, offset: int, length: int) -> dict[str, Any]:
    real = _real(rel)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat_.S_ISREG(st.st_mode):
            raise AgentError("invalid", "only files can be opened")
        os.lseek(fd, offset, os.SEEK_SET)
        chunks = []
        left = length
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return {"data": base64.b64encode(data).decode(), "size": st.st_size}


@action("files.read", web=True)
def read(*, user: str, path: str, offset: int = 0, length: int = MAX_READ) -> dict[str, Any]:
    """Up to ``length`` bytes of a file from ``offset`` (base64), and the file's size."""
    path = validate.home_path(path, allow_root=False)
    if offset < 0 or not 0 < length <= MAX_READ:
        raise AgentError("invalid", f"read at most {MAX_READ} bytes at a time")
    return {"changed": False, **_call(user, _read, path, offset, length)}


def _write(rel: str, data: bytes) -> None:
    parent, name = _parent_and_name(rel)
    target = os.path.join(parent, name)
    if os.path.isdir(target):
        raise AgentError("invalid", "a folder has that name")
    if os.path.islink(target) and not _under(
        os.path.realpath(os.environ["HOME"]), os.path.realpath(target)
    ):
        raise _leaves()
    tmp = os.path.join(parent, f".hw-upload.{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


@action("files.write", web=True)
def write(*, user: str, path: str, data: str) -> dict[str, Any]:
    """Write a file (base64 ``data``) through a new file renamed into place."""
    path = validate.home_path(path, allow_root=False)
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise AgentError("invalid", "data must be base64") from None
    if len(raw) > MAX_WRITE:
        raise AgentError("invalid", f"files are at most {MAX_WRITE // 2**20} MB here")
    _call(user, _write, path, raw)
    return {"changed": True}


def _create(rel: str, folder: bool) -> None:
    parent, name = _parent_and_name(rel)
    target = os.path.join(parent, name)
    if os.path.lexists(target):
        raise AgentError("exists", "that name is taken")
    if folder:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


@action("files.mkdir", web=True)
def mkdir(*, user: str, path: str) -> dict[str, Any]:
    """Make a folder (refused when the name is taken)."""
    _call(user, _create, validate.home_path(path, allow_root=False), True)
    return {"changed": True}


@action("files.touch", web=True)
def touch(*, user: str, path: str) -> dict[str, Any]:
    """Make an empty file (refused when the name is taken)."""
    _call(user, _create, validate.home_path(path, allow_root=False), False)
    return {"changed": True}


def _rename(rel: str, new_rel: str) -> None:
    parent, name = _parent_and_name(rel)
    new_parent, new_name = _parent_and_name(new_rel)
    source = os.path.join(parent, name)
    target = os.path.join(new_parent, new_name)
    if not os.path.lexists(source):
        raise AgentError("not_found", "no such file or folder")
    if os.path.lexists(target):
        raise AgentError("exists", "that name is taken")
    os.rename(source, target)


@action("files.rename", web=True)
def rename(*, user: str, path: str, new_path: str) -> dict[str, Any]:
    """Rename or move inside the home (a link moves as a link)."""
    path = validate.home_path(path, allow_root=False)
    new_path = validate.home_path(new_path, allow_root=False)
    _call(user, _rename, path, new_path)
    return {"changed": True}


def _delete(rel: str) -> None:
    parent, name = _parent_and_name(rel)
    target = os.path.join(parent, name)
    if os.path.islink(target) or not os.path.isdir(target):
        os.unlink(target)
    else:
        shutil.rmtree(target)


@action("files.delete", web=True)
def delete(*, user: str, path: str) -> dict[str, Any]:
    """Delete a file, a link (not what it points to) or a folder with its content."""
    _call(user, _delete, validate.home_path(path, allow_root=False))
    return {"changed": True}


def _chmod(rel: str, mode: int) -> None:
    os.chmod(_real(rel), mode)


@action("files.chmod", web=True)
def chmod(*, user: str, path: str, mode: str) -> dict[str, Any]:
    """Set permissions (three octal digits; no setuid, setgid or sticky bits)."""
    path = validate.home_path(path, allow_root=False)
    _call(user, _chmod, path, validate.file_mode(mode))
    return {"changed": True}
