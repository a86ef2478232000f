"""The node agent attacked as a customer would: links planted where root acts in a home.

For every root-side action that touches a customer's home, a symbolic link (and a hard link
where one applies) is planted at each path it touches, pointing at a root-owned decoy; the
decoy must come out unchanged. Also: the web key's reach, a customer's view of /proc, and
login shells. Runs against the agent on the loopback test node, through the panel's SSH code.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning import ssh

pytestmark = pytest.mark.node

OWNER = f"hostwright service {900000 + os.getpid() % 99999}"


def target(test_node: Any) -> ssh.Target:
    return ssh.Target(
        node_id=9200,
        address=test_node.address,
        port=test_node.port,
        user="root",
        host_key=test_node.host_key,
    )


def agent(test_node: Any, *actions: ssh.AgentAction, web: bool = False) -> ssh.AgentResult:
    return ssh.call(
        target(test_node),
        list(actions),
        key_path=test_node.web_key_path if web else test_node.key_path,
        timeout=60,
        tier="web" if web else "worker",
    )


def ok(result: ssh.AgentResult) -> list[ssh.ActionResult]:
    assert result.ok, result
    return result.results


def error_of(result: ssh.AgentResult) -> dict[str, Any]:
    failure = result.failure()
    assert failure is not None, result
    return failure[1]


@pytest.fixture
def account(test_node: Any) -> Iterator[str]:
    user = f"{test_node.user_prefix}atk{secrets.token_hex(2)}"
    ok(agent(test_node, ssh.action("user.ensure", user=user, owner=OWNER)))
    yield user
    agent(test_node, ssh.action("user.remove", user=user, owner=OWNER))


class Decoy:
    """A root-owned folder with a root-owned file in it, outside any home."""

    def __init__(self) -> None:
        self.dir = Path(f"/var/lib/hostwright-decoy-{secrets.token_hex(4)}")
        self.dir.mkdir(mode=0o700)
        self.file = self.dir / "secret"
        self.file.write_text("root's own\n")
        self.file.chmod(0o600)

    def state(self) -> list[tuple[str, int, int, int, int, bytes]]:
        out = []
        for p in (self.dir, self.file, *sorted(self.dir.iterdir())):
            st = p.lstat()
            data = p.read_bytes() if p.is_file() else b""
            out.append((p.name, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink, data))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    d = Decoy()
    yield d
    d.remove()


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def old_layout(user: str) -> None:
    """The home as it was before the agent (the customer's own): the customer can plant
    anything at its top level, as on nodes being upgraded."""
    pw = pwd.getpwnam(user)
    os.chown(f"/home/{user}", pw.pw_uid, pw.pw_gid)
    os.chmod(f"/home/{user}", 0o750)  # noqa: S103  (as homes were)


def plant_link(user: str, path: str, to: Path) -> None:
    """As the customer: replace ``path`` in the home with a symbolic link to ``to``."""
    full = f"/home/{user}/{path}"
    result = as_user(user, "sh", "-c", 'rm -rf -- "$1" && ln -s -- "$2" "$1"', "sh", full, str(to))
    assert result.returncode == 0, result.stderr
    assert os.path.islink(full)


@pytest.mark.parametrize("path", ["tmp", "public_html"])
def test_repairing_a_home_does_not_follow_a_link_to_a_root_folder(test_node, account, decoy, path):
    # given a customer who replaced a folder of the home by a link to a root-owned folder
    old_layout(account)
    plant_link(account, path, decoy.dir)
    before = decoy.state()
    # when the account's user and home are converged again (drift repair, WordPress, SFTP)
    for act in (
        ssh.action("user.ensure", user=account, owner=OWNER, welcome_html="<p>hi</p>"),
        ssh.action("sftp.enable", user=account, owner=OWNER),
    ):
        ok(agent(test_node, act))
    # then the decoy is untouched and the folder is a real one again, the home root's
    assert decoy.state() == before
    assert not os.path.islink(f"/home/{account}/{path}")
    assert os.path.isdir(f"/home/{account}/{path}")
    st = os.lstat(f"/home/{account}")
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o751


def test_the_welcome_page_is_not_written_through_a_link(test_node, account, decoy):
    plant_link(account, "public_html/index.html", decoy.file)
    before = decoy.state()
    ok(agent(test_node, ssh.action("user.ensure", user=account, owner=OWNER, welcome_html="x")))
    assert decoy.state() == before


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_my_cnf_is_replaced_not_written_through_a_link(test_node, account, decoy, link):
    # given a link named .my.cnf to a root-owned file (planted as the old layout allowed; a
    # hard link to root's file needs root, so the test plants that one itself)
    old_layout(account)
    cnf = Path(f"/home/{account}/.my.cnf")
    if link == "symbolic":
        plant_link(account, ".my.cnf", decoy.file)
    else:
        os.link(decoy.file, cnf)
    before = [s for s in decoy.state() if s[0] != "secret"]
    content = decoy.file.read_bytes()
    # when the database credentials are written
    ok(
        agent(
            test_node,
            ssh.action(
                "user.mycnf",
                user=account,
                owner=OWNER,
                db_user=account,
                password="pw-" + secrets.token_hex(8),
                database=f"{account}_main",
                secret=("password",),
            ),
        )
    )
    # then the decoy keeps its content, owner and mode; .my.cnf is a file of its own
    assert decoy.file.read_bytes() == content
    assert stat.S_IMODE(decoy.file.stat().st_mode) == 0o600 and decoy.file.stat().st_uid == 0
    assert [s for s in decoy.state() if s[0] != "secret"] == before
    st = cnf.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o640)
    assert st.st_gid == pwd.getpwnam(account).pw_gid


def test_a_home_that_is_a_link_is_refused(test_node, decoy):
    user = f"{test_node.user_prefix}lnk{secrets.token_hex(2)}"
    os.symlink(decoy.dir, f"/home/{user}")
    before = decoy.state()
    try:
        result = agent(test_node, ssh.action("user.ensure", user=user, owner=OWNER))
        assert error_of(result)["code"] == "unsafe_path"
        assert decoy.state() == before
    finally:
        agent(test_node, ssh.action("user.remove", user=user, owner=OWNER))
        if os.path.islink(f"/home/{user}"):
            os.unlink(f"/home/{user}")
    assert decoy.state() == before


def test_removing_an_account_removes_links_not_their_targets(test_node, decoy):
    user = f"{test_node.user_prefix}rm{secrets.token_hex(2)}"
    ok(agent(test_node, ssh.action("user.ensure", user=user, owner=OWNER)))
    plant_link(user, "public_html/to-dir", decoy.dir)
    plant_link(user, "tmp/to-file", decoy.file)
    os.link(decoy.file, f"/home/{user}/public_html/hard")
    before = [s for s in decoy.state() if s[0] != "secret"]
    ok(agent(test_node, ssh.action("user.remove", user=user, owner=OWNER)))
    assert not os.path.lexists(f"/home/{user}")
    assert decoy.file.read_text() == "root's own\n"
    assert [s for s in decoy.state() if s[0] != "secret"] == before


def test_measuring_usage_does_not_follow_links(test_node, account, decoy):
    plant_link(account, "public_html/to-dir", decoy.dir)
    before = decoy.state()
    (measured,) = ok(agent(test_node, ssh.action("usage.measure", users=[account])))
    assert measured.data["accounts"][account]["disk_mb"] is not None
    assert decoy.state() == before


def test_file_actions_through_a_link_cannot_reach_roots_files(test_node, account, decoy):
    plant_link(account, "public_html/to-dir", decoy.dir)
    plant_link(account, "public_html/to-file", decoy.file)
    before = decoy.state()
    attempts = [
        ssh.action("files.read", user=account, path="public_html/to-file"),
        ssh.action("files.write", user=account, path="public_html/to-file", data="eA=="),
        ssh.action("files.write", user=account, path="public_html/to-dir/new", data="eA=="),
        ssh.action("files.chmod", user=account, path="public_html/to-file", mode="666"),
        ssh.action("files.list", user=account, path="public_html/to-dir"),
    ]
    for attempt in attempts:
        error = error_of(agent(test_node, attempt, web=True))
        assert error["code"] in ("unsafe_path", "forbidden"), (attempt, error)
    ok(agent(test_node, ssh.action("files.delete", user=account, path="public_html/to-dir"),
             web=True))  # fmt: skip
    assert decoy.state() == before


def test_a_customer_sees_only_its_own_processes(test_node, account):
    # root's processes (this test, sshd, the agent) are invisible to the customer
    result = as_user(account, "sh", "-c", "ls /proc | grep -E '^[0-9]+$'; echo self=$$")
    assert result.returncode == 0, result.stderr
    pids = {int(p) for p in result.stdout.split() if p.isdigit()}
    assert os.getpid() not in pids and 1 not in pids
    assert as_user(account, "test", "-e", f"/proc/{os.getpid()}").returncode != 0


def test_accounts_get_no_login_shell_unless_the_plan_grants_one(test_node, account):
    pw = pwd.getpwnam(account)
    assert pw.pw_shell == "/usr/sbin/nologin"
    groups = subprocess.run(["id", "-nG", account], capture_output=True, text=True).stdout.split()
    assert "hwnologin" in groups and "hwssh" not in groups
    ok(agent(test_node, ssh.action("user.ensure", user=account, owner=OWNER, login_shell=True)))
    assert pwd.getpwnam(account).pw_shell == "/bin/bash"
    groups = subprocess.run(["id", "-nG", account], capture_output=True, text=True).stdout.split()
    assert "hwssh" in groups and "hwnologin" not in groups


def test_another_owners_user_is_neither_changed_nor_removed(test_node, account):
    other = "hostwright service 1"
    assert (
        error_of(agent(test_node, ssh.action("user.ensure", user=account, owner=other)))["code"]
        == "conflict"
    )
    assert (
        error_of(agent(test_node, ssh.action("user.remove", user=account, owner=other)))["code"]
        == "conflict"
    )
    assert pwd.getpwnam(account)


def test_the_web_key_cannot_run_worker_actions_or_a_shell(test_node, account):
    error = error_of(agent(test_node, ssh.action("user.remove", user=account, owner=OWNER),
                           web=True))  # fmt: skip
    assert error["code"] == "forbidden"
    assert pwd.getpwnam(account)


def test_inventory_finds_an_account_kind_by_kind_and_nothing_after_removal(test_node):
    user = f"{test_node.user_prefix}inv{secrets.token_hex(2)}"
    domain = f"inv-{secrets.token_hex(3)}.example"
    build = [
        ssh.action("user.ensure", user=user, owner=OWNER),
        ssh.action("limits.set", user=user, cpu_percent=50, memory_mb=128, processes=20),
        ssh.action("pool.ensure", user=user, workers=1, memory_mb=128),
        ssh.action("site.ensure", user=user, service=1, domain=domain),
    ]
    remove = [
        ssh.action("site.remove", user=user),
        ssh.action("pool.remove", user=user),
        ssh.action("user.remove", user=user, owner=OWNER),
        ssh.action("limits.remove", user=user),
    ]
    try:
        ok(agent(test_node, *build))
        (listed,) = ok(agent(test_node, ssh.action("inventory.list", account=user)))
        found = listed.data["found"]
        for kind in ("user", "home", "pool", "site"):
            assert found[kind] == [user], (kind, found)
        if Path("/sys/fs/cgroup/pids").is_dir():
            assert found["limits"] == [user]
        # the same again changes nothing (every action is idempotent)
        assert not any(r.changed for r in ok(agent(test_node, *build)))
    finally:
        ok(agent(test_node, *remove))
    (listed,) = ok(agent(test_node, ssh.action("inventory.list", account=user)))
    assert all(names == [] for names in listed.data["found"].values()), listed.data
