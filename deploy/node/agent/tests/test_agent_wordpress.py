"""wordpress.* actions: validation, then an install as the account's user on this node."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Account, Decoy, plant_hardlink, plant_symlink
from hwagent import databases, wordpress
from hwagent.errors import AgentError

HASH = "$P$B" + "abcdefghijklmnopqrstuvwxyz01234"[:30]
GOOD: dict[str, Any] = {
    "account": "alice",
    "domain": "blog.example",
    "title": "Olivia's Blog",
    "admin_user": "olivia",
    "admin_email": "olivia@example.com",
    "admin_password_hash": HASH,
}

BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (wordpress.install, {**GOOD, "account": "Alice"}),
    (wordpress.install, {**GOOD, "domain": "blog..example"}),
    (wordpress.install, {**GOOD, "title": "<script>"}),
    (wordpress.install, {**GOOD, "title": "a;b`c`"}),
    (wordpress.install, {**GOOD, "title": "x" * 81}),
    (wordpress.install, {**GOOD, "title": ""}),
    (wordpress.install, {**GOOD, "admin_user": "x'); DROP"}),
    (wordpress.install, {**GOOD, "admin_email": "olivia"}),
    (wordpress.install, {**GOOD, "admin_email": "o'@example.com"}),
    (wordpress.install, {**GOOD, "admin_password_hash": "plain-password"}),
    (wordpress.install, {**GOOD, "scheme": "javascript"}),
    (wordpress.remove, {"account": "../x", "files": True, "database": True, "user": True}),
]  # fmt: skip


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_wordpress_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code == "invalid"


@pytest.fixture
def wp_account(account: Account) -> Iterator[Account]:
    yield account
    wordpress.remove(account=account.name, files=True, database=True, user=True)


def install(account: Account) -> dict[str, Any]:
    return wordpress.install(**{**GOOD, "account": account.name})


@pytest.mark.node
def test_install_runs_as_the_account_and_says_what_it_created(wp_account: Account) -> None:
    first = install(wp_account)
    again = install(wp_account)
    assert (first["created"], first["database_created"], first["user_created"]) == (
        True,
        True,
        True,
    )
    assert (again["created"], again["database_created"], again["changed"]) == (False, False, False)
    uid = wp_account.ids()[0]
    for name in ("wp-config.php", "index.php", "wp-admin"):
        assert os.lstat(wp_account.docroot / name).st_uid == uid
    assert (os.lstat(wp_account.docroot / "wp-config.php").st_mode & 0o777) == 0o640
    # the front page renders as the account's user
    page = subprocess.run(
        ["runuser", "-u", wp_account.name, "--", "php", "-d", "display_errors=stderr"],
        input=(
            "<?php $_SERVER['HTTP_HOST']='blog.example'; $_SERVER['REQUEST_URI']='/';"
            f" chdir('{wp_account.docroot}'); require 'index.php';"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Olivia&#039;s Blog" in page.stdout, page.stderr[-2000:]

    # an undo of what it created empties the docroot and drops its database and user
    wordpress.remove(account=wp_account.name, files=True, database=True, user=True)
    assert os.listdir(wp_account.docroot) == []
    assert databases.inventory(account=wp_account.name) == {
        "changed": False,
        "databases": [],
        "users": {},
    }


@pytest.mark.node
def test_a_site_with_files_gets_a_readable_reason_and_nothing_changes(
    wp_account: Account,
) -> None:
    (wp_account.docroot / "shop.php").write_text("<?php echo 'mine';")
    with pytest.raises(AgentError) as err:
        install(wp_account)
    assert err.value.code == "docroot_not_empty"
    assert "shop.php" in err.value.message
    for internal in ("php -", "runuser", "set -e", "/usr/share", "tar "):
        assert internal not in err.value.message
    assert (wp_account.docroot / "shop.php").read_text() == "<?php echo 'mine';"
    assert databases.inventory(account=wp_account.name)["databases"] == []


@pytest.mark.node
def test_an_existing_wp_database_is_a_conflict(wp_account: Account) -> None:
    databases.ensure(account=wp_account.name, name=f"{wp_account.name}_wp")
    with pytest.raises(AgentError) as err:
        install(wp_account)
    assert err.value.code == "conflict"
    assert os.listdir(wp_account.docroot) == ["index.html"]


@pytest.mark.node
@pytest.mark.parametrize("where", ["docroot", "index.html", "wp-config.php"])
def test_links_planted_in_the_docroot_leave_roots_files_alone(
    wp_account: Account, decoy: Decoy, where: str
) -> None:
    before = decoy.state()
    if where == "docroot":
        plant_symlink(wp_account.docroot, decoy.folder)
    elif where == "index.html":
        plant_hardlink(wp_account.docroot / "index.html", decoy.file)
    else:
        plant_symlink(wp_account.docroot / "wp-config.php", decoy.file)
    try:
        install(wp_account)
    except AgentError as exc:
        assert exc.code in ("docroot_not_folder", "docroot_not_empty")
    assert decoy.state() == before
