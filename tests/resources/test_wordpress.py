"""WordPress from Debian's package installed into a site's docroot on the node."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from provisioning.resources import databases as hwdb
from provisioning.resources import wordpress as wp
from provisioning.resources.errors import ResourceRefused

from .conftest import run_on_node

RENDER = """<?php
$_SERVER['HTTP_HOST'] = '{domain}'; $_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET'; $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
chdir('{docroot}'); require '{docroot}/index.php';
"""


@pytest.fixture
def linux_account(mariadb_node):
    """A Linux user with an empty docroot, like a fresh hosting account, and its database."""
    account = f"wp{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--user-group", account], check=True)
    # Not under pytest's tmp_path: its parents are closed to other users.
    home = Path(tempfile.mkdtemp(prefix="hw-wp-"))
    home.chmod(0o755)
    docroot = home / "public_html"
    docroot.mkdir()
    (docroot / "index.html").write_text("welcome\n")
    shutil.chown(docroot, account, account)
    password = wp.new_secret()
    run_on_node(hwdb.database_create_script(account=account, name="wp"))
    run_on_node(
        hwdb.db_user_create_script(
            account=account,
            user="wp",
            password_hash=hwdb.native_password_hash(password),
            databases=["wp"],
        )
    )
    yield account, docroot, password
    run_on_node(hwdb.db_user_delete_script(account=account, user="wp"))
    run_on_node(hwdb.database_delete_script(account=account, name="wp"))
    subprocess.run(["userdel", account], check=False)
    shutil.rmtree(home, ignore_errors=True)


def install(account: str, docroot: Path, db_password: str, admin_password: str, **kw):
    admin_hash = wp.wordpress_password_hash(admin_password)
    return wp.wordpress_install_script(
        account=account,
        domain="blog.example",
        docroot=str(docroot),
        db_name="wp",
        db_user="wp",
        db_password=db_password,
        title=kw.get("title", "Olivia's Blog"),
        admin_user="olivia",
        admin_email="olivia@example.com",
        admin_password_hash=admin_hash,
    )


@pytest.mark.node
def test_wordpress_installs_into_an_empty_site_and_renders_its_page(linux_account):
    account, docroot, db_password = linux_account
    admin_password = wp.new_secret()

    # when WordPress is installed into the site (twice: a retried step)
    script = install(account, docroot, db_password, admin_password)
    first = run_on_node(script)
    second = run_on_node(script)

    # then it installed once, and its front page renders as the account's user
    assert first.stdout.strip().endswith("installed")
    assert "already installed" in second.stdout
    page = subprocess.run(
        ["runuser", "-u", account, "--", "php", "-d", "display_errors=stderr"],
        input=RENDER.format(domain="blog.example", docroot=docroot),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Olivia&#039;s Blog" in page.stdout, page.stderr[-2000:]
    assert 'content="WordPress' in page.stdout
    # and the admin can log in with the password shown once (WordPress's own check)
    check = subprocess.run(
        ["runuser", "-u", account, "--", "php", "-d", "display_errors=stderr"],
        input=(
            f"<?php $_SERVER['HTTP_HOST']='blog.example'; chdir('{docroot}');"
            f" require '{docroot}/wp-load.php';"
            f" $u = wp_authenticate('olivia', '{admin_password}');"
            " echo is_wp_error($u) ? 'denied' : 'ok';"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == "ok", check.stderr[-2000:]
    # and wp-config.php is private to the account, with secrets hidden from the record
    config = docroot / "wp-config.php"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert db_password in config.read_text()
    assert db_password not in script.for_log()
    assert admin_password not in script.script  # only WordPress's hash of it travels


@pytest.mark.node
def test_a_site_with_files_is_not_overwritten(linux_account):
    account, docroot, db_password = linux_account
    (docroot / "shop.php").write_text("<?php echo 'mine';")
    result = run_on_node(install(account, docroot, db_password, wp.new_secret()), check=False)
    assert result.returncode == 3
    assert (docroot / "shop.php").read_text() == "<?php echo 'mine';"
    assert not (docroot / "wp-config.php").exists()


@pytest.mark.parametrize("title", ["<script>", "a;b`c`", "x" * 81, ""])
def test_bad_titles_are_refused(title):
    with pytest.raises(ResourceRefused):
        wp.wordpress_install_script(
            account="alice",
            domain="blog.example",
            docroot="/home/alice/public_html",
            db_name="wp",
            db_user="wp",
            db_password=wp.new_secret(),
            title=title,
            admin_user="alice",
            admin_email="alice@example.com",
            admin_password_hash=wp.wordpress_password_hash("x" * 12),
        )


def test_docroot_with_dot_dot_is_refused():
    with pytest.raises(ResourceRefused):
        wp.wordpress_install_script(
            account="alice",
            domain="blog.example",
            docroot="/home/alice/../bob/public_html",
            db_name="wp",
            db_user="wp",
            db_password=wp.new_secret(),
            title="Blog",
            admin_user="alice",
            admin_email="alice@example.com",
            admin_password_hash=wp.wordpress_password_hash("x" * 12),
        )
