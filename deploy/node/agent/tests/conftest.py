"""Fixtures for the node agent's tests that act on this machine as the node: accounts, decoys.

An account is a real Linux user with a home under ``/home`` like the panel's (the home is
``root:<user>`` 0751 with the account's ``public_html`` and ``tmp`` inside, when the node
lays homes out that way, else the account's own); a decoy is a root-owned file and folder in
a root-only place on the same file system, so a hard link to it can be planted in a home.
Tests plant links at the paths an action touches and check that the decoy did not change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Account:
    name: str
    home: Path

    @property
    def docroot(self) -> Path:
        return self.home / "public_html"

    def chown(self, path: Path) -> None:
        os.lchown(path, *self.ids())

    def ids(self) -> tuple[int, int]:
        import pwd

        pw = pwd.getpwnam(self.name)
        return pw.pw_uid, pw.pw_gid


@dataclass
class Decoy:
    """A root-owned file (0600) and folder (0700) that no customer action may change."""

    file: Path
    folder: Path

    def state(self) -> tuple[str, int, int, int, int, list[str]]:
        """Content, owner, group and mode of the file, and what the folder holds (link counts
        are left out: a hard link the test planted raises them)."""
        st = os.lstat(self.file)
        digest = hashlib.sha256(self.file.read_bytes()).hexdigest()
        folder = os.lstat(self.folder)
        listing = sorted(os.listdir(self.folder))
        return (digest, st.st_uid, st.st_gid, st.st_mode, folder.st_uid, listing)


def make_account(prefix: str) -> Account:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    home = Path("/home") / name
    for folder, mode in (("public_html", 0o755), ("tmp", 0o700)):
        (home / folder).mkdir(exist_ok=True)
        (home / folder).chmod(mode)
    (home / "public_html" / "index.html").write_text("welcome\n")
    account = Account(name=name, home=home)
    for path in (home / "public_html", home / "tmp", home / "public_html" / "index.html"):
        account.chown(path)
    account.chown(home)
    home.chmod(0o750)
    return account


def drop_account(account: Account) -> None:
    subprocess.run(["pkill", "-KILL", "-u", account.name], check=False, capture_output=True)
    subprocess.run(["userdel", account.name], check=False, capture_output=True)
    shutil.rmtree(account.home, ignore_errors=True)


@pytest.fixture
def account() -> Iterator[Account]:
    acct = make_account("ag")
    yield acct
    drop_account(acct)


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    """Placed under /var/lib (the same file system as /home here, so hard links work)."""
    base = Path(tempfile.mkdtemp(prefix="hw-decoy-", dir="/var/lib"))
    base.chmod(0o700)
    file = base / "secret"
    file.write_text("root's secret\n")
    file.chmod(0o600)
    folder = base / "folder"
    folder.mkdir(mode=0o700)
    (folder / "keep").write_text("root's file\n")
    yield Decoy(file=file, folder=folder)
    shutil.rmtree(base, ignore_errors=True)


def plant_symlink(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def plant_hardlink(path: Path, target: Path) -> None:
    """Root plants it (a customer cannot link a file they cannot write: protected_hardlinks);
    it stands for any link the customer could make to a file of root's."""
    if path.exists() or path.is_symlink():
        path.unlink()
    os.link(target, path)
