"""WordPress from Debian's package installed into a site's docroot on the node, by the node
agent as the account's own user; and the panel's checks before anything is sent."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hwagent import databases as agent_db
from hwagent import wordpress as agent_wp
from hwagent.errors import AgentError

from provisioning.errors import ProvisioningRefused
from provisioning.resources import wordpress as wp

RENDER = """<?php
$_SERVER['HTTP_HOST'] = '{domain}'; $_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET'; $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
chdir('{docroot}'); require '{docroot}/index.php';
"""


@pytest.fixture
def linux_account(mariadb_node):
    """A Linux user with a docroot holding the welcome page, like a fresh hosting account."""
    account = f"wp{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--user-group", account], check=True)
    home = Path(f"/home/{account}")
    docroot = home / "public_html"
    docroot.mkdir()
    (docroot / "index.html").write_text("welcome\n")
    pw = pwd.getpwnam(account)
    for path in (docroot, docroot / "index.html"):
        shutil.chown(path, pw.pw_uid, pw.pw_gid)
    yield account, docroot
    agent_wp.remove(account=account, files=True, database=True, user=True)
    subprocess.run(["userdel", account], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def install(account: str, admin_password: str, title: str = "Olivia's Blog") -> dict:
    return agent_wp.install(
        account=account,
        domain="blog.example",
        title=title,
        admin_user="olivia",
        admin_email="olivia@example.com",
        admin_password_hash=wp.wordpress_password_hash(admin_password),
    )


def as_account(account: str, php: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", account, "--", "php", "-d", "display_errors=stderr"],
        input=php,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.node
def test_wordpress_installs_into_an_empty_site_and_renders_its_page(linux_account):
    account, docroot = linux_account
    admin_password = wp.new_secret()

    # when WordPress is installed into the site (twice: a retried step)
    first = install(account, admin_password)
    second = install(account, admin_password)

    # then it installed once, and its front page renders as the account's user
    assert first["created"] is True and first["database_created"] is True
    assert second["created"] is False and second["changed"] is False
    page = as_account(account, RENDER.format(domain="blog.example", docroot=docroot))
    assert "Olivia&#039;s Blog" in page.stdout, page.stderr[-2000:]
    assert 'content="WordPress' in page.stdout
    # and the admin can log in with the password shown once (WordPress's own check)
    check = as_account(
        account,
        f"<?php $_SERVER['HTTP_HOST']='blog.example'; chdir('{docroot}');"
        f" require '{docroot}/wp-load.php';"
        f" $u = wp_authenticate('olivia', '{admin_password}');"
        " echo is_wp_error($u) ? 'denied' : 'ok';",
    )
    assert check.stdout.strip() == "ok", check.stderr[-2000:]
    # and wp-config.php is the account's, private, with a database password that works
    config = docroot / "wp-config.php"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert config.owner() == account
    assert agent_db.inventory(account=account)["users"][f"{account}_wp"]


@pytest.mark.node
def test_a_site_with_files_is_not_overwritten_and_the_reason_names_them(linux_account):
    account, docroot = linux_account
    (docroot / "shop.php").write_text("<?php echo 'mine';")
    with pytest.raises(AgentError) as err:
        install(account, wp.new_secret())
    assert err.value.code == "docroot_not_empty"
    assert "shop.php" in err.value.message and "set -" not in err.value.message
    assert (docroot / "shop.php").read_text() == "<?php echo 'mine';"
    assert not (docroot / "wp-config.php").exists()
    assert agent_db.inventory(account=account)["databases"] == []


def check(**kw):
    args = {
        "account": "alice",
        "domain": "blog.example",
        "title": "Blog",
        "admin_user": "alice",
        "admin_email": "alice@example.com",
        **kw,
    }
    return wp.validate_install(**args)


@pytest.mark.parametrize("title", ["<script>", "a;b`c`", "x" * 81, ""])
def test_bad_titles_are_refused(title):
    with pytest.raises(ProvisioningRefused):
        check(title=title)


@pytest.mark.parametrize(
    "kw", [{"admin_user": "bad user;rm"}, {"admin_email": "nope"}, {"account": "../bob"}]
)
def test_bad_install_values_are_refused(kw):
    with pytest.raises(ProvisioningRefused):
        check(**kw)
