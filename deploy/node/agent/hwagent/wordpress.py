"""One-click WordPress in an account's site, from Debian's ``wordpress`` package.

Everything inside the home is done by the account's own user: the check that the site is
empty, copying the files, writing ``wp-config.php`` and running WordPress's installer. Root
only makes the database ``<account>_wp`` and its user, whose password is made here and goes
straight into ``wp-config.php``: it never leaves the node. The admin password never reaches
the node: only WordPress's hash of it does.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from hwagent import _inhome, _sql, safefs, validate
from hwagent.databases import HOSTS, _exists, _set_user, _user_hosts
from hwagent.errors import AgentError
from hwagent.registry import action

_TITLE = re.compile(r"^[\w .,:!?&()'-]{1,80}$")
_ADMIN = re.compile(r"^[a-z][a-z0-9_.-]{2,59}$")
_PHPASS = re.compile(r"^\$P\$[./0-9A-Za-z]{31}$")
_SECRET_CHARS = string.ascii_letters + string.digits + "_-"
SALT_NAMES = (
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
)


def _secret(length: int) -> str:
    return "".join(secrets.choice(_SECRET_CHARS) for _ in range(length))


def wp_config(*, db_name: str, db_user: str, db_password: str) -> str:
    keys = "\n".join(f"define('{k}', '{_secret(48)}');" for k in SALT_NAMES)
    return f"""<?php
// Written by Hostwright.
define('DB_NAME', '{db_name}');
define('DB_USER', '{db_user}');
define('DB_PASSWORD', '{db_password}');
define('DB_HOST', 'localhost');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{keys}
$table_prefix = 'wp_';
define('WP_DEBUG', false);
define('DISALLOW_FILE_EDIT', true);
if (!defined('ABSPATH')) {{ define('ABSPATH', __DIR__ . '/'); }}
require_once ABSPATH . 'wp-settings.php';
"""


def installer(
    *, domain: str, url: str, title: str, admin_user: str, admin_email: str, admin_hash: str
) -> str:
    """The PHP run by the account's user: WordPress's own ``wp_install()``, then the admin's
    password hash put in place of the throwaway password the installer wants."""
    php_title = title.replace("\\", "\\\\").replace("'", "\\'")
    return f"""<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = '{domain}';
$_SERVER['REQUEST_URI'] = '/';
require './wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (is_blog_installed()) {{ echo "already installed\\n"; exit(0); }}
$result = wp_install('{php_title}', '{admin_user}', '{admin_email}', true, '', '{_secret(32)}');
$wpdb->update($wpdb->users, ['user_pass' => '{admin_hash}'], ['ID' => $result['user_id']]);
update_option('siteurl', '{url}');
update_option('home', '{url}');
echo "installed\\n";
"""


def _checked(
    account: str,
    domain: str,
    title: str,
    admin_user: str,
    admin_email: str,
    hash_: str,
    scheme: str,
) -> tuple[str, str, str]:
    """The install's arguments checked; returns the account, domain and e-mail normalized."""
    account = validate.linux_user(account)
    domain = validate.domain(domain)
    if not isinstance(title, str) or not _TITLE.match(title):
        raise AgentError("invalid", "use letters, digits and simple punctuation for the title")
    if not _ADMIN.match(admin_user):
        raise AgentError("invalid", f"{admin_user[:60]!r} is not a valid admin user name")
    local, _, mail_domain = admin_email.partition("@")
    email = f"{validate.local_part(local.lower())}@{validate.domain(mail_domain)}"
    if not _PHPASS.match(hash_):
        raise AgentError("invalid", "that is not a usable admin password hash")
    if scheme not in ("http", "https"):
        raise AgentError("invalid", "the site's address starts with http or https")
    return account, domain, email


@action("wordpress.install")
def install(
    *,
    account: str,
    domain: str,
    title: str,
    admin_user: str,
    admin_email: str,
    admin_password_hash: str,
    scheme: str = "http",
) -> dict[str, Any]:
    """WordPress in ``~/public_html`` with its own database ``<account>_wp``.

    Looks first: an install of ours (marked, with ``wp-config.php``) only gets the installer
    run again, which does nothing on an installed site. Otherwise the site must hold nothing
    but the welcome page (else ``docroot_not_empty``, naming the files) and the database must
    not exist yet (else ``conflict``); nothing has changed when either refuses. The answer says
    what this call created (files, database, database user), for an undo that removes only
    that. On a failure after the database was made, ``changed`` lists what was made.
    """
    account, domain, admin_email = _checked(
        account, domain, title, admin_user, admin_email, admin_password_hash, scheme
    )
    docroot = f"{safefs.account(account).pw_dir}/public_html"
    db = f"{account}_wp"
    present = safefs.as_user(account, _inhome.wordpress_state, docroot=docroot)
    made: list[str] = []
    created_files = created_db = created_user = False
    if not present["installed"]:
        if present["blocking"]:
            shown = ", ".join(present["blocking"][:10])
            more = len(present["blocking"]) - 10
            raise AgentError(
                "docroot_not_empty",
                "WordPress is only installed into an empty site; public_html already holds "
                + shown
                + (f" and {more} more" if more > 0 else "")
                + ". Move or delete these files first.",
            )
        if _exists(db):
            raise AgentError(
                "conflict", f"the database {db} already exists: delete or rename it first"
            )
        created_user = not _user_hosts(db)
        password = _secret(24)
        try:
            _sql.run(
                f"CREATE DATABASE IF NOT EXISTS `{db}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
            )
            created_db = True
            made.append(f"database {db}")
            _set_user(db, _sql.native_hash(password), [db])
            if created_user:
                made.append(f"database user {db}")
            config = wp_config(db_name=db, db_user=db, db_password=password)
            files = safefs.as_user(account, _inhome.wordpress_files, docroot=docroot, config=config)
            created_files = bool(files.get("created"))
            made.append("WordPress files")
        except AgentError as exc:
            exc.changed = made + exc.changed
            raise
    url = f"{scheme}://{domain}"
    try:
        run = safefs.as_user(
            account,
            _inhome.wordpress_install,
            docroot=docroot,
            script=installer(
                domain=domain,
                url=url,
                title=title,
                admin_user=admin_user,
                admin_email=admin_email,
                admin_hash=admin_password_hash,
            ),
        )
    except AgentError as exc:
        exc.changed = made + exc.changed
        raise
    return {
        "changed": bool(made) or run.get("said") == "installed",
        "created": created_files,
        "database_created": created_db,
        "user_created": created_user,
        "database": db,
        "hosts": list(HOSTS),
    }


@action("wordpress.remove")
def remove(*, account: str, files: bool, database: bool, user: bool) -> dict[str, Any]:
    """Undo an install: empty ``~/public_html`` when it holds our WordPress (``files``), and
    drop ``<account>_wp`` (``database``) and its user (``user``) when asked."""
    account = validate.linux_user(account)
    db = f"{account}_wp"
    changed = False
    if files:
        try:
            home = safefs.account(account).pw_dir
        except AgentError as exc:
            if exc.code != "not_found":
                raise
        else:
            done = safefs.as_user(account, _inhome.wordpress_remove, docroot=f"{home}/public_html")
            changed = bool(done.get("changed"))
    if database and _exists(db):
        _sql.run(f"DROP DATABASE IF EXISTS `{db}`;")
        changed = True
    if user:
        for host in sorted(_user_hosts(db)):
            if host in HOSTS:
                _sql.run(f"DROP USER IF EXISTS '{db}'@'{host}';")
                changed = True
    return {"changed": changed}
