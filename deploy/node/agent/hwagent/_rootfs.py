"""Root's own directories (ACME webroot, certificates, backups), opened without following links.

Each component of the path is opened relative to its parent with ``O_NOFOLLOW`` and must be a
directory owned by root that no one else may write to; a missing one is created with the
given mode. Files are written under a random temporary name created with ``O_EXCL`` and then
renamed into place, so a link found at the final name is replaced and never written through.
"""

from __future__ import annotations

import os
import stat

from hwagent.errors import AgentError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str, *, create_mode: int | None = None) -> int:
    """A descriptor of the root-owned directory ``path`` (absolute, no ``..``)."""
    if not path.startswith("/") or ".." in path.split("/"):
        raise AgentError("invalid", f"{path} is not an absolute path")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise AgentError("not_found", f"{path} does not exist") from None
                os.mkdir(part, create_mode, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise AgentError("unsafe_path", f"{path} is not a plain directory") from None
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if st.st_uid != 0 or st.st_mode & 0o022:
                raise AgentError(
                    "unsafe_path", f"{path} must belong to root and be closed to others"
                )
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o600) -> bool:
    """Write ``name`` in the directory atomically; returns whether its content changed."""
    if "/" in name or name in ("", ".", ".."):
        raise AgentError("invalid", f"{name!r} is not a file name")
    try:
        old = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        old = -1
    if old >= 0:
        try:
            st = os.fstat(old)
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_nlink == 1
                and st.st_uid == 0
                and (st.st_mode & 0o7777) == mode
                and st.st_size == len(data)
                and os.read(old, len(data) + 1) == data
            ):
                return False
        finally:
            os.close(old)
    tmp = f".{name}.{os.urandom(8).hex()}.tmp"
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def remove_file(dir_fd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def remove_tree(dir_fd: int, name: str) -> bool:
    """Remove the directory ``name`` and everything in it, never following a link."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError:
        os.unlink(name, dir_fd=dir_fd)  # a file or a link: the entry only
        return True
    try:
        for entry in os.listdir(fd):
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
    return True
