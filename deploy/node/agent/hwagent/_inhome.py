"""Work done inside a customer's home as the customer's own Linux user.

These functions run in the child ``safefs.as_user`` forks, after it dropped to the account's
uid, gid and groups: whatever the customer planted in the home (a symbolic link, a hard link,
a file swapped between two calls) leads nowhere that user could not go anyway. They raise
``AgentError`` with messages a customer can read, and return JSON values.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from typing import Any

from hwagent.errors import AgentError

RESTORE_PREFIX = ".hw-restore-"
WORDPRESS_SOURCE = "/usr/share/wordpress"
WORDPRESS_MARK = ".hostwright-wordpress"
# What a fresh site holds before WordPress may go in.
WORDPRESS_ALLOWED = frozenset({"index.html"})


def _remove(path: str) -> None:
    """Remove a file, a link or a whole folder (links are removed, never followed)."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# --- backup and restore ----------------------------------------------------------------------


def archive_home(*, home: str, out_fd: int) -> dict[str, Any]:
    """Write a gzip tar of the home (members ``<account>/...``) to ``out_fd`` (root's file,
    opened by root). What the user cannot read is reported, not skipped silently."""
    parent, name = os.path.split(home.rstrip("/"))
    done = subprocess.run(
        [
            "tar",
            "--create",
            "--gzip",
            "--one-file-system",
            "--numeric-owner",
            f"--exclude={RESTORE_PREFIX}*",
            f"--directory={parent}",
            "--file=-",
            name,
        ],
        stdin=subprocess.DEVNULL,
        stdout=out_fd,
        stderr=subprocess.PIPE,
        check=False,
    )
    err = done.stderr.decode(errors="replace").strip()
    return {"ok": done.returncode == 0, "error": err[-300:] if done.returncode else ""}


def _staging_parent(home: str) -> str:
    """Where the unpacked copy goes: the home itself when the user may write there, else the
    account's own ``tmp`` (same file system, so entries can be renamed into place)."""
    if os.access(home, os.W_OK):
        return home
    tmp = os.path.join(home, "tmp")
    st = os.lstat(tmp)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise AgentError("restore_failed", "the account has no folder to restore through")
    return tmp


def _replace_entries(target: str, staged: str, *, skip: str, problems: list[str]) -> None:
    """Make the folder ``target`` hold exactly what ``staged`` holds (entry by entry)."""
    wanted = set(os.listdir(staged))
    for name in sorted(os.listdir(target)):
        path = os.path.join(target, name)
        if path == skip or name in wanted:
            continue
        try:
            _remove(path)
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror}")
    for name in sorted(wanted):
        src, dst = os.path.join(staged, name), os.path.join(target, name)
        if dst == skip:
            continue
        try:
            if os.path.lexists(dst):
                _remove(dst)
            os.rename(src, dst)
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror}")


def restore_home(*, home: str, archive_fd: int) -> dict[str, Any]:
    """Make the home what the archive on ``archive_fd`` holds (as the backup made it).

    The archive is unpacked into a new folder first; only when that worked do entries give
    way: each one is replaced by its unpacked copy, and entries the backup did not hold are
    removed, so files created after the backup do not survive. Where the home itself is
    root's (entries directly in it are made by root), the content of each of the account's
    folders there is restored instead, and root's own entries are left to root. If unpacking
    fails, nothing in the home has changed.
    """
    staging = tempfile.mkdtemp(prefix=RESTORE_PREFIX, dir=_staging_parent(home))
    try:
        done = subprocess.run(
            [
                "tar",
                "--extract",
                "--gzip",
                "--file=-",
                f"--directory={staging}",
                "--strip-components=1",
                "--preserve-permissions",
                "--no-same-owner",
                "--delay-directory-restore",
            ],
            stdin=archive_fd,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise AgentError(
                "restore_failed",
                "the backup's files could not be unpacked; nothing was changed",
                detail=done.stderr.decode(errors="replace")[-1000:],
            )
        problems: list[str] = []
        restored = sorted(os.listdir(staging))
        if os.access(home, os.W_OK):
            _replace_entries(home, staging, skip=staging, problems=problems)
        else:
            uid = os.getuid()
            for name in sorted(os.listdir(staging)):
                path = os.path.join(home, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    problems.append(f"{name}: missing in the home")
                    continue
                if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                    _replace_entries(
                        path, os.path.join(staging, name), skip=staging, problems=problems
                    )
            # Folders of the account's own that the backup did not hold are emptied.
            for name in sorted(set(os.listdir(home)) - set(os.listdir(staging))):
                path = os.path.join(home, name)
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                    empty = tempfile.mkdtemp(prefix=RESTORE_PREFIX, dir=staging)
                    _replace_entries(path, empty, skip=staging, problems=problems)
        if problems:
            raise AgentError(
                "restore_incomplete",
                "some files could not be restored: " + "; ".join(problems[:5]),
                changed=["files"],
            )
        return {"restored": restored}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- WordPress -------------------------------------------------------------------------------


def wordpress_state(*, docroot: str) -> dict[str, Any]:
    """Whether our WordPress is in the docroot, and which files would block an install."""
    try:
        st = os.lstat(docroot)
    except FileNotFoundError:
        raise AgentError(
            "docroot_missing", "the site's folder public_html does not exist"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise AgentError("docroot_not_folder", "public_html is not a folder")
    present = set(os.listdir(docroot))
    installed = WORDPRESS_MARK in present and "wp-config.php" in present
    return {"installed": installed, "blocking": sorted(present - WORDPRESS_ALLOWED)}


def wordpress_files(*, docroot: str, config: str) -> dict[str, Any]:
    """Copy WordPress into the docroot and write ``wp-config.php`` with ``config``.

    Checks again that the docroot holds nothing but the welcome page.
    """
    state = wordpress_state(docroot=docroot)
    if state["installed"]:
        return {"created": False}
    if state["blocking"]:
        raise AgentError("docroot_not_empty", "public_html is not empty any more")
    if os.path.lexists(os.path.join(docroot, "index.html")):
        os.unlink(os.path.join(docroot, "index.html"))

    def skip(folder: str, names: list[str]) -> set[str]:
        if os.path.realpath(folder) == os.path.realpath(WORDPRESS_SOURCE):
            return {".htaccess", "wp-config.php"} & set(names)
        return set()

    shutil.copytree(
        WORDPRESS_SOURCE,
        docroot,
        symlinks=False,
        ignore=skip,
        ignore_dangling_symlinks=True,
        dirs_exist_ok=True,
    )
    fd, tmp = tempfile.mkstemp(prefix=".wp-config-", dir=docroot)
    try:
        os.fchmod(fd, 0o640)
        data = config.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(docroot, "wp-config.php"))
    with open(os.path.join(docroot, WORDPRESS_MARK), "w"):
        pass
    return {"created": True}


def wordpress_install(*, docroot: str, script: str) -> dict[str, Any]:
    """Run the installer PHP (given on stdin) with the docroot as working folder."""
    os.chdir(docroot)
    done = subprocess.run(
        ["php", "-d", "display_errors=stderr", "-d", "open_basedir="],
        input=script.encode(),
        capture_output=True,
        check=False,
    )
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    said = lines[-1] if lines else ""
    if done.returncode != 0 or not said.endswith("installed"):
        err = done.stderr.decode(errors="replace")
        raise AgentError(
            "wordpress_failed",
            "WordPress's installer did not finish",
            changed=["files"],
            detail=(said + "\n" + err)[-1500:],
        )
    return {"said": said}


def wordpress_remove(*, docroot: str) -> dict[str, Any]:
    """Empty the docroot, but only when it holds our WordPress (marked at install)."""
    try:
        present = os.listdir(docroot)
    except FileNotFoundError:
        return {"changed": False}
    if WORDPRESS_MARK not in present:
        return {"changed": False}
    for name in present:
        _remove(os.path.join(docroot, name))
    return {"changed": True}
