"""safefs: handles that do not follow links, files replaced instead of written through, and
work done as an unprivileged user (needs root, as the agent has)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hwagent import safefs
from hwagent.errors import AgentError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def whoami() -> list[int]:
    return [os.getuid(), os.geteuid(), os.getgid(), *os.getgroups()]


def fail() -> None:
    raise AgentError("conflict", "from the child")


def test_as_user_drops_every_privilege() -> None:
    ids = safefs.as_user("nobody", whoami)
    nobody = safefs.account("nobody")
    assert ids[:3] == [nobody.pw_uid, nobody.pw_uid, nobody.pw_gid]
    assert 0 not in ids


def test_as_user_carries_agent_errors_back() -> None:
    with pytest.raises(AgentError) as exc:
        safefs.as_user("nobody", fail)
    assert exc.value.code == "conflict" and exc.value.message == "from the child"


def test_as_user_refuses_root_and_unknown_accounts() -> None:
    with pytest.raises(AgentError) as exc:
        safefs.as_user("root", whoami)
    assert exc.value.code == "unsafe_path"
    with pytest.raises(AgentError) as exc:
        safefs.as_user("hwnosuchuser", whoami)
    assert exc.value.code == "not_found"


@pytest.fixture
def root_dir(tmp_path: Path) -> Any:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def test_write_at_replaces_a_hard_link_instead_of_writing_through_it(root_dir: Any) -> None:
    path, fd = root_dir
    decoy = path / "decoy"
    decoy.write_text("root's\n")
    os.link(decoy, path / ".my.cnf")
    assert safefs.write_at(fd, ".my.cnf", b"new\n", uid=0, gid=0, mode=0o640)
    assert decoy.read_text() == "root's\n"
    assert (path / ".my.cnf").read_text() == "new\n"
    assert stat.S_IMODE((path / ".my.cnf").stat().st_mode) == 0o640
    # the same content again changes nothing
    assert not safefs.write_at(fd, ".my.cnf", b"new\n", uid=0, gid=0, mode=0o640)


def test_write_at_replaces_a_symlink_instead_of_following_it(root_dir: Any) -> None:
    path, fd = root_dir
    decoy = path / "decoy"
    decoy.write_text("root's\n")
    os.symlink(decoy, path / "target")
    safefs.write_at(fd, "target", b"x", uid=0, gid=0, mode=0o600)
    assert decoy.read_text() == "root's\n" and not (path / "target").is_symlink()
    assert [p.name for p in path.iterdir() if p.name.startswith(".target")] == []


def test_open_dir_at_refuses_links_and_files(root_dir: Any) -> None:
    path, fd = root_dir
    (path / "real").mkdir()
    os.symlink(path / "real", path / "link")
    (path / "file").write_text("")
    for name in ("link", "file"):
        with pytest.raises(AgentError) as exc:
            safefs.open_dir_at(fd, name)
        assert exc.value.code == "unsafe_path"
    with pytest.raises(AgentError):
        safefs.open_dir_at(fd, "../etc")
    new = safefs.open_dir_at(fd, "made", create_mode=0o700)
    os.close(new)
    assert (path / "made").is_dir()
