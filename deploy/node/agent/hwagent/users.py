"""Hosting accounts' Linux users and their homes.

Layout of an account's home (the SFTP chroot, so root's)::

    /home/<user>               root:<user>      0751  root-owned: the customer cannot add,
                                                      swap or remove entries here
    /home/<user>/public_html   <user>:www-data  2750  the docroot; nginx reads it through the
                                                      group, other accounts cannot enter
    /home/<user>/tmp           <user>:<user>    0700  PHP's uploads, sessions, temporary files
    /home/<user>/.my.cnf       root:<user>      0640  the main database's credentials

Root makes and fixes these entries through handles from ``/home`` (``safefs``); whatever is
inside ``public_html`` and ``tmp`` is written as the account's user. Every account's user
carries its owner in the GECOS field (``hostwright service <id>``): nothing is changed or
removed for a user whose tag names another owner.

Accounts get ``/usr/sbin/nologin`` and the group ``hwnologin`` (which sshd turns away) unless
their plan grants a shell (``login_shell=True``: ``/bin/bash`` and the group ``hwssh``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import time
from typing import Any

from hwagent import safefs, system, validate
from hwagent.errors import AgentError
from hwagent.registry import action

NOLOGIN = "/usr/sbin/nologin"
SHELL = "/bin/bash"
SSH_GROUP = "hwssh"
NOLOGIN_GROUP = "hwnologin"  # sshd's DenyGroups (deploy/node/parts/20-sshd.sh)
WEB_GROUP = "www-data"
_OWNER = re.compile(r"hostwright service [0-9]{1,12}")


def owner_tag(value: object) -> str:
    if not isinstance(value, str) or not _OWNER.fullmatch(value):
        raise AgentError("invalid", "owner must read 'hostwright service <id>'")
    return value


def _gecos(user: str) -> str | None:
    try:
        return safefs.account(user).pw_gecos.split(",")[0]
    except AgentError:
        return None


def check_owner(user: str, owner: str) -> bool:
    """Whether the user exists; refuses one that belongs to someone else."""
    gecos = _gecos(user)
    if gecos is None:
        return False
    if gecos != owner:
        raise AgentError("conflict", f"the Linux user {user} exists and belongs to another account")
    return True


def _group_members(group: str) -> list[str]:
    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


def _ensure_group(group: str) -> None:
    try:
        grp.getgrnam(group)
    except KeyError:
        system.run(["groupadd", "--system", group], what=f"creating the group {group}")


def set_membership(user: str, group: str, member: bool) -> bool:
    """Add the user to, or take it out of, a supplementary group; returns whether it changed."""
    _ensure_group(group)
    if (user in _group_members(group)) == member:
        return False
    argv = ["gpasswd", "-a" if member else "-d", user, group]
    system.run(argv, what=f"changing the membership of {group}")
    return True


def _web_gid() -> int:
    try:
        return grp.getgrnam(WEB_GROUP).gr_gid
    except KeyError:
        raise AgentError("not_prepared", "the web server's group is missing") from None


def _replace_link(home: int, name: str) -> None:
    """A symbolic link where a managed folder belongs is removed (never followed); a file
    or anything else there is the customer's and is refused."""
    try:
        st = os.stat(name, dir_fd=home, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        os.unlink(name, dir_fd=home)


def home_layout(user: str) -> bool:
    """Create or repair the home's layout; returns whether anything changed."""
    pw = safefs.account(user)
    web = _web_gid()
    changed = False
    with safefs.home_fd(user, create=True) as home:
        # The home first: once it is root's, the customer cannot swap its entries any more.
        changed |= safefs.set_owner(home, uid=0, gid=pw.pw_gid, mode=0o751)
        for name, uid, gid, mode in (
            ("public_html", pw.pw_uid, web, 0o2750),
            ("tmp", pw.pw_uid, pw.pw_gid, 0o700),
        ):
            _replace_link(home, name)
            fd = safefs.open_dir_at(home, name, create_mode=0o700)
            try:
                changed |= safefs.set_owner(fd, uid=uid, gid=gid, mode=mode)
            finally:
                os.close(fd)
    return changed


def _write_welcome(html: str) -> bool:
    """As the account's user: public_html/index.html, unless the docroot has one already."""
    try:
        fd = os.open(
            "public_html/index.html",
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            0o644,
        )
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(html)
    return True


@action("user.ensure")
def ensure(
    *, user: str, owner: str, login_shell: bool = False, welcome_html: str = ""
) -> dict[str, Any]:
    """The account's Linux user, its home layout and (when the docroot has no index.html yet)
    the welcome page.

    Checks first that an existing user of that name carries ``owner``'s tag (otherwise:
    ``conflict``, nothing changed). Sets the login shell (``/bin/bash`` and the group
    ``hwssh`` with ``login_shell``, else ``/usr/sbin/nologin``). On failure the user may exist
    without its full layout; running it again finishes the work.
    """
    user = validate.linux_user(user)
    owner = owner_tag(owner)
    if len(welcome_html) > 65536:
        raise AgentError("invalid", "the welcome page is too long")
    changed: list[str] = []
    login = SHELL if login_shell else NOLOGIN
    if not check_owner(user, owner):
        _ensure_group(SSH_GROUP)
        system.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                f"{safefs.HOME_ROOT}/{user}",
                "--shell",
                login,
                "--user-group",
                "--comment",
                owner,
                user,
            ],
            what="creating the Linux user",
        )
        changed.append("user")
    elif safefs.account(user).pw_shell != login:
        system.run(["usermod", "--shell", login, user], what="setting the login shell")
        changed.append("shell")
    try:
        if set_membership(user, SSH_GROUP, login_shell):
            changed.append("ssh group")
        if set_membership(user, NOLOGIN_GROUP, not login_shell):
            changed.append("nologin group")
        if home_layout(user):
            changed.append("home")
        if welcome_html and safefs.as_user(user, _write_welcome, welcome_html):
            changed.append("welcome page")
    except AgentError as exc:
        exc.changed = changed + exc.changed
        raise
    return {"changed": bool(changed), "uid": safefs.account(user).pw_uid, "did": changed}


def _kill(user: str) -> None:
    """End every process of the user (root sees them all, hidepid or not)."""
    for _ in range(50):
        system.run(["pkill", "-KILL", "-u", user], check=False)
        if system.run(["pgrep", "-u", user], check=False).returncode != 0:
            return
        time.sleep(0.1)
    raise AgentError("busy", f"processes of {user} are still running", permanent=False)


def _remove_home(user: str) -> bool:
    path = f"{safefs.HOME_ROOT}/{user}"
    if not os.path.lexists(path):
        return False
    if os.path.islink(path):
        os.unlink(path)
        return True
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has it
        raise AgentError("unsafe_path", "this system cannot remove a home safely")
    shutil.rmtree(path)
    return True


def _orphaned_home(user: str) -> bool:
    """Whether /home/<user> exists and no user or group on the node owns it any more."""
    try:
        st = os.lstat(f"{safefs.HOME_ROOT}/{user}")
    except FileNotFoundError:
        return False
    try:
        if st.st_uid:
            pwd.getpwuid(st.st_uid)
        else:
            grp.getgrgid(st.st_gid)
    except KeyError:
        return True
    return False


@action("user.remove")
def remove(*, user: str, owner: str) -> dict[str, Any]:
    """Remove the account's Linux user, its cron jobs, its processes and its home.

    Refuses (``conflict``) a user that carries another owner's tag. A home left behind
    without its user is removed only when no user owns its files any more. The home is
    removed with ``shutil.rmtree``'s descriptor-based walk, which never follows a link the
    customer planted. On failure part of the home may remain; running it again finishes.
    """
    user = validate.linux_user(user)
    owner = owner_tag(owner)
    changed: list[str] = []
    if check_owner(user, owner):
        from hwagent import cron

        if cron.purge(user):  # its jobs first: a timer must not start one as the user goes
            changed.append("cron")
        _kill(user)
        if _remove_home(user):
            changed.append("home")
        system.run(["userdel", user], what="removing the Linux user")
        changed.append("user")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/var/mail/{user}")
    elif _orphaned_home(user) and _remove_home(user):
        changed.append("home")
    return {"changed": bool(changed), "did": changed}


@action("user.lock")
def lock(*, user: str, owner: str) -> dict[str, Any]:
    """Suspend logins: the account expires, gets no shell, its cron jobs stop running and its
    processes end."""
    user = validate.linux_user(user)
    if not check_owner(user, owner_tag(owner)):
        raise AgentError("not_found", f"there is no account {user} on this node")
    system.run(["usermod", "--expiredate", "1", "--shell", NOLOGIN, user], what="locking")
    from hwagent import cron

    cron.pause(user, True)  # systemd runs timers whatever the account's expiry says
    _kill(user)
    return {"changed": True}


@action("user.unlock")
def unlock(*, user: str, owner: str, login_shell: bool = False) -> dict[str, Any]:
    """Let the account log in again (a shell only when its plan grants one)."""
    user = validate.linux_user(user)
    if not check_owner(user, owner_tag(owner)):
        raise AgentError("not_found", f"there is no account {user} on this node")
    login = SHELL if login_shell else NOLOGIN
    system.run(["usermod", "--expiredate", "", "--shell", login, user], what="unlocking")
    set_membership(user, SSH_GROUP, login_shell)
    set_membership(user, NOLOGIN_GROUP, not login_shell)
    from hwagent import cron

    cron.pause(user, False)
    return {"changed": True}


@action("user.mycnf")
def mycnf(*, user: str, owner: str, db_user: str, password: str, database: str) -> dict[str, Any]:
    """Write ``~/.my.cnf`` (root:<user> 0640) with the main database's credentials.

    Written through the home's handle as a new file renamed into place: a link planted under
    that name is replaced, never followed or written through.
    """
    user = validate.linux_user(user)
    owner = owner_tag(owner)
    db_user = validate.owned_by(validate.db_user(db_user), user)
    database = validate.owned_by(validate.db_name(database), user)
    password = validate.one_line(password, name="the password", maximum=200)
    if not password or any(c in password for c in "\\'\"#;"):
        raise AgentError("invalid", "the password has characters a client file cannot hold")
    if not check_owner(user, owner):
        raise AgentError("not_found", f"there is no account {user} on this node")
    pw = safefs.account(user)
    content = f"[client]\nuser={db_user}\npassword={password}\ndatabase={database}\n"
    with safefs.home_fd(user) as home:
        changed = safefs.write_at(
            home, ".my.cnf", content.encode(), uid=0, gid=pw.pw_gid, mode=0o640
        )
    return {"changed": changed}
