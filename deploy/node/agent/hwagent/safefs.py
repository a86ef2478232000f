"""How root touches an account's home without following a path the customer can change.

Two ways, and nothing else:

1. **Handles from a root-owned anchor.** ``/home`` is root's; ``home_fd`` opens
   ``/home/<user>`` from it with ``O_NOFOLLOW | O_DIRECTORY``. The home itself is root-owned
   (``root:<user>``, 0751: it is also the account's SFTP chroot), so the entries directly in
   it are root's to make and the customer cannot swap them. Root acts on those entries only
   through ``openat``-style calls relative to that handle (``dir_fd=``, ``O_NOFOLLOW``), and
   writes files by creating a fresh one (``O_EXCL``, random name) and renaming it into place:
   never by opening an existing name for writing, so a hard link planted there is replaced,
   not written through. Ownership and modes change with ``fchown``/``fchmod`` on a handle.
2. **The customer's own user** for everything below the entries root made (the docroot's
   content, uploads, the file manager, a customer's tmp): ``as_user`` forks a child that drops
   to the account's uid, gid and groups (``setgroups``, ``setgid``, ``setuid``: no way back)
   before it touches anything, so the kernel's permission checks confine it like the customer.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import Any

from hwagent.errors import AgentError

HOME_ROOT = "/home"


def unsafe(message: str) -> AgentError:
    return AgentError("unsafe_path", message)


def account(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise AgentError("not_found", f"there is no account {user} on this node") from None


def _anchor() -> int:
    fd = os.open(HOME_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o022:
        os.close(fd)
        raise unsafe(f"{HOME_ROOT} must belong to root and not be writable by others")
    return fd


@contextlib.contextmanager
def home_fd(user: str, *, create: bool = False) -> Iterator[int]:
    """A handle on ``/home/<user>``, opened from the root-owned ``/home`` without following a
    link. With ``create`` a missing home is made (root-owned, 0700 until set up)."""
    anchor = _anchor()
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(user, 0o700, dir_fd=anchor)
        try:
            fd = os.open(user, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=anchor)
        except FileNotFoundError:
            raise AgentError("not_found", f"the home of {user} does not exist") from None
        except (NotADirectoryError, OSError) as exc:
            raise unsafe(f"the home of {user} is not a plain folder ({exc.strerror})") from None
    finally:
        os.close(anchor)
    try:
        yield fd
    finally:
        os.close(fd)


def open_dir_at(dir_fd: int, name: str, *, create_mode: int | None = None) -> int:
    """A handle on the folder ``name`` in ``dir_fd`` (made when ``create_mode`` is given).

    A symbolic link, or anything but a folder, in its place is refused: root does not follow
    it and does not remove what the customer put there.
    """
    if "/" in name or name in ("", ".", ".."):
        raise unsafe(f"{name!r} is not a single name")
    if create_mode is not None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, create_mode, dir_fd=dir_fd)
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        raise AgentError("not_found", f"{name} does not exist") from None
    except OSError as exc:
        raise unsafe(f"{name} is not a folder (a link or a file is in its place)") from exc


def set_owner(fd: int, *, uid: int, gid: int, mode: int) -> bool:
    """``fchown`` and ``fchmod`` on a handle; returns whether anything changed."""
    st = os.fstat(fd)
    changed = False
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
        changed = True
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)
        changed = True
    return changed


def write_at(dir_fd: int, name: str, data: bytes, *, uid: int, gid: int, mode: int) -> bool:
    """Put a file named ``name`` in the folder ``dir_fd`` (which no customer can write to):
    a new file with a random name, ``O_EXCL | O_NOFOLLOW``, owner and mode set on its handle,
    then renamed over ``name``. Returns whether the content, owner or mode changed."""
    try:
        old = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        old = -1
    if old >= 0:
        try:
            st = os.fstat(old)
            same = (
                stat.S_ISREG(st.st_mode)
                and st.st_nlink == 1
                and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode)
                and st.st_size == len(data)
                and os.read(old, len(data) + 1) == data
            )
        finally:
            os.close(old)
        if same:
            return False
    tmp = f".{name[:60]}.hw{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return True


def remove_at(dir_fd: int, name: str) -> bool:
    """Remove the file or link ``name`` in ``dir_fd`` (never what a link points to)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def as_user(user: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` in a forked child that is the account's user.

    The child sets its groups, gid and uid to the account's (and cannot regain root), sets
    ``HOME``, a 022 umask and the home as working folder, then runs ``func``. Its result (a
    JSON value) or its ``AgentError`` comes back over a pipe; any other exception becomes a
    ``failed`` error. Use it for everything inside folders the customer can write to.
    """
    pw = account(user)
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise unsafe("refusing to act as root on a customer's behalf")
    groups = os.getgrouplist(user, pw.pw_gid)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_end)
        code = 0
        try:
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            if os.getuid() == 0 or os.geteuid() == 0:
                raise unsafe("could not drop root")
            os.umask(0o022)
            os.environ.clear()
            os.environ.update(
                {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "PATH": "/usr/bin:/bin"}
            )
            with contextlib.suppress(OSError):
                os.chdir(pw.pw_dir)
            answer: dict[str, Any] = {"ok": func(*args, **kwargs)}
        except AgentError as exc:
            answer = {"error": exc.as_dict()}
        except OSError as exc:
            answer = {"error": os_error(exc).as_dict()}
        except BaseException as exc:
            answer = {
                "error": AgentError(
                    "failed", "the action failed on the node", detail=repr(exc)[:500]
                ).as_dict()
            }
        try:
            payload = json.dumps(answer).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view) :]
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise AgentError(
            "failed", "the action failed on the node", permanent=False, detail=f"status {status}"
        ) from None
    if "error" in answer:
        e = answer["error"]
        raise AgentError(
            e["code"],
            e["message"],
            permanent=e["permanent"],
            changed=e["changed"],
            detail=e["detail"],
        )
    return answer["ok"]


def os_error(exc: OSError) -> AgentError:
    """A file-system error as the customer should read it (no paths of root's)."""
    import errno

    messages = {
        errno.ENOENT: ("not_found", "no such file or folder"),
        errno.EEXIST: ("exists", "that name is taken"),
        errno.ENOTEMPTY: ("exists", "the folder is not empty"),
        errno.EACCES: ("forbidden", "permission denied"),
        errno.EPERM: ("forbidden", "permission denied"),
        errno.ELOOP: ("unsafe_path", "that path goes through a symbolic link"),
        errno.ENOTDIR: ("invalid", "a part of that path is not a folder"),
        errno.EISDIR: ("invalid", "that is a folder"),
        errno.ENOSPC: ("no_space", "the disk is full"),
        errno.EDQUOT: ("no_space", "the disk quota is used up"),
        errno.ENAMETOOLONG: ("invalid", "that name is too long"),
        errno.EXDEV: ("invalid", "that cannot be moved there"),
    }
    code, message = messages.get(exc.errno or 0, ("failed", "the file system refused that"))
    return AgentError(code, message, detail=f"{exc.strerror}")
