"""Running programs, node-wide locks and root's own files.

Programs are run with argument lists (never a shell), stdin closed unless input is given, and
output captured; a failure becomes an ``AgentError`` whose ``detail`` holds the end of the
program's output for the operator's step record and whose message stays plain.

Root's temporary files live in ``RUN_DIR`` (``/run/hostwright/agent``, root only, 0700) under
names from ``tempfile`` (unguessable); configuration files are replaced by writing a new file
beside them with ``O_EXCL`` and renaming it over the old one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

from hwagent.errors import AgentError

LOCK_DIR = "/run/hostwright"
RUN_DIR = "/run/hostwright/agent"
TAIL = 2000


def have_systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = 120,
    what: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program; with ``check`` a non-zero exit raises ``AgentError('failed')``."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise AgentError(
            "timeout", f"{what or argv[0]} did not finish in time", permanent=False
        ) from None
    except FileNotFoundError:
        raise AgentError("not_prepared", f"{argv[0]} is not installed on the node") from None
    if check and proc.returncode != 0:
        raise AgentError(
            "failed",
            f"{what or argv[0]} failed",
            permanent=proc.returncode != 75,
            detail=output_tail(proc),
        )
    return proc


def output_tail(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stderr or b"") + (proc.stdout or b"")
    return f"exit {proc.returncode}: " + text.decode(errors="replace").strip()[-TAIL:]


@contextlib.contextmanager
def file_lock(path: str, *, wait: float, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (opened without following links), waiting up to
    ``wait`` seconds; past that, a transient ``busy`` error with the message ``busy``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise AgentError("busy", busy, permanent=False) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def node_lock(kind: str, *, wait: float = 60) -> Iterator[None]:
    """Serialize changes to one node-wide configuration (``nginx``, ``fpm``, ``sshd``...).

    The lock files are the ones the node's earlier shell tooling used, so both agree while a
    node is being upgraded.
    """
    os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
    busy = f"another change to the {kind} configuration is in progress"
    with file_lock(f"{LOCK_DIR}/{kind}.lock", wait=wait, busy=busy):
        yield


def run_dir() -> str:
    """Root's own scratch directory, created 0700 and checked to be root's."""
    os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(RUN_DIR, 0o700)
    st = os.lstat(RUN_DIR)
    if not os.path.isdir(RUN_DIR) or os.path.islink(RUN_DIR) or st.st_uid != 0:
        raise AgentError("unsafe_path", "the agent's run directory is not root's")
    if st.st_mode & 0o077:
        os.chmod(RUN_DIR, 0o700)
    return RUN_DIR


def scratch_file(suffix: str = "") -> tuple[int, str]:
    """A new temporary file in the root-only run directory: (fd, path)."""
    return tempfile.mkstemp(prefix="hw-", suffix=suffix, dir=run_dir())


def read_text(path: str) -> str | None:
    """A root-owned file's text, or None when it does not exist (never follows a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def replace_file(path: str, content: str | bytes, *, mode: int = 0o644) -> bool:
    """Write a root-owned file atomically; returns whether its content changed.

    The new content goes to a fresh file beside the old one (``mkstemp``: ``O_EXCL``, a random
    name) that is renamed over it, so readers see the old or the new file, never half of one.
    Only for directories no customer can write to.
    """
    data = content.encode() if isinstance(content, str) else content
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                st = os.fstat(f.fileno())
                if st.st_mode & 0o7777 == mode and st.st_uid == 0:
                    return False
    except FileNotFoundError:
        pass
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def remove_file(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
