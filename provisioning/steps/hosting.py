"""The hosting account on a node: Linux user, PHP-FPM pool, nginx server block, limits,
MariaDB database, disk usage; and the operation kinds built from them.

Layout on a node (prepared by ``deploy/node/bootstrap.sh``):

- ``/home/<user>`` (mode 0750, group www-data) with the docroot ``public_html``;
- ``/etc/php/8.2/fpm/pool.d/hw-<user>.conf`` listening on ``/run/php/hw-<user>.sock``;
- ``/etc/nginx/hostwright/sites/<user>.conf`` (included from ``conf.d/hostwright.conf``);
- ``/var/lib/hostwright/suspended/index.html``, the page suspended accounts show;
- cgroups ``hostwright/<user>`` under the cpu, memory and pids controllers.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from billing.models import Plan
from provisioning import ssh, validators
from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import Operation, Service, StepRun
from provisioning.ssh import Command, cmd, put_file
from provisioning.steps.base import OperationKind, Step, StepContext, register_kind

ssh.register_shell_functions((Path(__file__).parent / "shell.sh").read_text())

PHP = "8.2"
SITES_DIR = "/etc/nginx/hostwright/sites"
POOL_DIR = f"/etc/php/{PHP}/fpm/pool.d"
SUSPENDED_ROOT = "/var/lib/hostwright/suspended"
CGROUP_JOIN_DIR = "/usr/local/lib/hostwright"


def _user(ctx: StepContext) -> str:
    return validators.validate_username(ctx.service.username)


def _domain(ctx: StepContext) -> str:
    return validators.validate_domain(ctx.service.domain)


def home(user: str) -> str:
    return f"/home/{user}"


def account_tmp(user: str) -> str:
    """The account's own temporary directory (PHP uploads, sessions)."""
    return posixpath.join(home(user), "tmp")


def docroot(user: str) -> str:
    return f"/home/{user}/public_html"


def pool_path(user: str) -> str:
    return f"{POOL_DIR}/hw-{user}.conf"


def pool_socket(user: str) -> str:
    return f"/run/php/hw-{user}.sock"


def site_path(user: str) -> str:
    return f"{SITES_DIR}/{user}.conf"


def owner_tag(service: Service) -> str:
    """The GECOS comment marking a Linux user as this service's, checked before any removal."""
    return f"hostwright service {service.pk}"


def pool_config(user: str, plan: Plan) -> str:
    memory_limit = max(32, min(plan.memory_mb // max(plan.php_workers, 1), 1024))
    basedir = ":".join(
        [f"{home(user)}/", f"{CGROUP_JOIN_DIR}/", "/proc/self/cgroup"]
        + [f"/sys/fs/cgroup/{c}/hostwright/{user}/" for c in ("cpu", "cpuacct", "memory", "pids")]
    )
    return f"""; managed by Hostwright: changes are overwritten
[hw-{user}]
user = {user}
group = {user}
listen = {pool_socket(user)}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = ondemand
pm.max_children = {plan.php_workers}
pm.process_idle_timeout = 30s
pm.max_requests = 500
chdir = /
php_admin_value[memory_limit] = {memory_limit}M
php_admin_value[open_basedir] = {basedir}
; Workers are forked by the shared master; each joins the account's cgroups on its first
; request (the account owns only its cgroup.procs files, see hw_cg_limits).
php_admin_value[auto_prepend_file] = {CGROUP_JOIN_DIR}/cgroup-join.php
; Temporary files, uploads and sessions stay in the account's own tmp, not a shared /tmp.
php_admin_value[sys_temp_dir] = {account_tmp(user)}
php_admin_value[upload_tmp_dir] = {account_tmp(user)}
php_admin_value[session.save_path] = {account_tmp(user)}
"""


def _listen(service: Service) -> str:
    ip = service.ip
    if ip is not None and ip.kind == "dedicated":
        address = f"[{ip.address}]" if ":" in ip.address else ip.address
        return f"{address}:80"
    return "80"


def tls_includes(user: str) -> str:
    """ACME challenges for the site's names, and its HTTPS part once it has a certificate
    (a pattern include: nothing until provisioning.resources.certificates writes the file)."""
    return (
        "    include /etc/nginx/snippets/hostwright-acme*.conf;\n"
        f"    include /etc/nginx/hostwright/tls/{user}[.]conf;"
    )


def site_config(service: Service, user: str, domain: str) -> str:
    return f"""# managed by Hostwright: service {service.pk}, {domain}
server {{
    listen {_listen(service)};
    server_name {domain} www.{domain};
{tls_includes(user)}
    root {docroot(user)};
    index index.php index.html;
    access_log /var/log/nginx/hw-{user}.access.log;
    error_log /var/log/nginx/hw-{user}.error.log;
    location ~ /\\.(?!well-known) {{ deny all; }}
    location ~ \\.php$ {{
        try_files $uri =404;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:{pool_socket(user)};
    }}
}}
"""


def suspended_config(service: Service, user: str, domain: str) -> str:
    return f"""# managed by Hostwright: service {service.pk}, {domain} (suspended)
server {{
    listen {_listen(service)};
    server_name {domain} www.{domain};
{tls_includes(user)}
    root {SUSPENDED_ROOT};
    error_page 503 /index.html;
    location = /index.html {{ internal; }}
    location / {{ return 503; }}
}}
"""


def welcome_page(domain: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{domain}</title></head>"
        f"<body><h1>{domain}</h1><p>This site is hosted and ready for its content.</p>"
        "</body></html>\n"
    )


class ValidateAccount(Step):
    """Re-check every value and that the node is prepared, before anything changes."""

    name = "validate"
    phase = "validating"

    def apply(self, ctx: StepContext) -> None:
        _user(ctx)
        _domain(ctx)
        result = ctx.run(
            [
                cmd("test", "-d", SITES_DIR, check=False),
                cmd("test", "-d", POOL_DIR, check=False),
                cmd("test", "-d", SUSPENDED_ROOT, check=False),
                cmd("command", "-v", "nginx", check=False),
                cmd("command", "-v", f"php-fpm{PHP}", check=False),
                cmd("test", "-f", f"{CGROUP_JOIN_DIR}/cgroup-join.php", check=False),
            ],
            check=False,
        )
        missing = [
            what
            for i, what in enumerate(
                [
                    "nginx sites directory",
                    "PHP-FPM pool directory",
                    "suspended page",
                    "nginx",
                    "PHP-FPM",
                    "PHP cgroup helper",
                ]
            )
            if result.exit_of(i) != 0
        ]
        if missing:
            raise PermanentStepError(
                f"node {ctx.node.name} is not prepared ({', '.join(missing)} missing): "
                "run deploy/node/bootstrap.sh on it",
                clean=True,
            )


class LinuxUser(Step):
    """The account's Linux user, home and docroot."""

    name = "linux_user"

    def apply(self, ctx: StepContext) -> None:
        user, domain = _user(ctx), _domain(ctx)
        probe = ctx.run(
            [
                cmd("getent", "passwd", user, check=False),
                cmd("test", "-e", docroot(user) + "/index.html", check=False),
            ],
            check=False,
        )
        commands: list[Command] = []
        if probe.exit_of(0) == 0:
            gecos = probe.stdout.split(":")[4] if probe.stdout.count(":") >= 6 else ""
            if gecos != owner_tag(ctx.service):
                raise PermanentStepError(
                    f"the Linux user {user} already exists on {ctx.node.name} and does not "
                    "belong to this service",
                    clean=True,
                )
        else:
            commands.append(
                cmd(
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    home(user),
                    "--shell",
                    "/bin/bash",
                    "--user-group",
                    "--comment",
                    owner_tag(ctx.service),
                    user,
                )
            )
        commands += [
            cmd("chown", f"{user}:www-data", home(user)),
            cmd("chmod", "0750", home(user)),
            cmd("install", "-d", "-o", user, "-g", user, "-m", "0755", docroot(user)),
            cmd("install", "-d", "-o", user, "-g", user, "-m", "0700", account_tmp(user)),
        ]
        if probe.exit_of(1) != 0:
            commands.append(
                put_file(
                    docroot(user) + "/index.html", welcome_page(domain), owner=f"{user}:{user}"
                )
            )
        ctx.run(commands)
        ctx.resource("linux_user", user)

    def undo(self, ctx: StepContext) -> None:
        user = _user(ctx)
        probe = ctx.run([cmd("getent", "passwd", user, check=False)], check=False)
        if probe.exit_of(0) != 0:
            ctx.run([cmd("rm", "-rf", "--one-file-system", home(user))])
            return
        gecos = probe.stdout.split(":")[4] if probe.stdout.count(":") >= 6 else ""
        if gecos != owner_tag(ctx.service):
            # Someone else's user of the same name: never remove it.
            return
        ctx.run(
            [
                cmd("pkill", "-KILL", "-u", user, check=False),
                cmd("userdel", "--remove", user, check=False),
                cmd("rm", "-rf", "--one-file-system", home(user)),
                cmd("getent", "passwd", user, check=False),
            ]
        )
        again = ctx.run([cmd("getent", "passwd", user, check=False)], check=False)
        if again.exit_of(0) == 0:
            raise TransientStepError(f"the Linux user {user} is still there (processes running?)")


class AccountLimits(Step):
    """CPU, memory and process limits in the account's cgroups (where the node has them)."""

    name = "limits"

    def limits_for(self, ctx: StepContext, plan: Plan) -> list[Command]:
        user = _user(ctx)
        quota = validators.validate_positive_int(plan.cpu_percent * 1000, name="CPU share")
        memory = validators.validate_positive_int(plan.memory_mb, name="memory") * 1024 * 1024
        procs = validators.validate_positive_int(plan.processes, name="processes")
        return [cmd("hw_cg_limits", user, str(quota), str(memory), str(procs))]

    def apply(self, ctx: StepContext) -> None:
        ctx.run(self.limits_for(ctx, ctx.plan))
        ctx.resource("cgroup", f"hostwright/{_user(ctx)}")

    def undo(self, ctx: StepContext) -> None:
        ctx.run([cmd("hw_cg_remove", _user(ctx))])


class PhpPool(Step):
    """A PHP-FPM pool running as the account's user, checked with php-fpm -t before reload."""

    name = "php_pool"

    def apply(self, ctx: StepContext) -> None:
        user = _user(ctx)
        ctx.run(
            [
                cmd(
                    "hw_cfg",
                    "fpm",
                    pool_path(user),
                    pool_config(user, ctx.plan),
                    label=f"stage, check (php-fpm -t) and swap in {pool_path(user)}",
                ),
                cmd("hw_fpm_settle", pool_socket(user), pool_path(user)),
            ]
        )
        ctx.resource("php_pool", f"hw-{user}")

    def undo(self, ctx: StepContext) -> None:
        user = _user(ctx)
        ctx.run(
            [
                cmd("hw_cfg", "fpm", pool_path(user)),
                cmd("hw_fpm_settle", pool_socket(user), pool_path(user)),
            ]
        )


class AccountDatabase(Step):
    """A MariaDB database and user for the account, with the credentials in ``~/.my.cnf``.

    The node agent's ``db.account_ensure`` makes the user at localhost and at 127.0.0.1, makes
    the password on the node (it never leaves it) and writes ``~/.my.cnf`` as a fresh file
    renamed over the entry, so a link planted there is replaced, never written through. A
    repair keeps the password the site uses. The undo removes what this operation created.
    """

    name = "database"

    def names(self, ctx: StepContext) -> tuple[str, str]:
        user = _user(ctx)
        return validators.validate_db_name(user), validators.validate_db_name(f"{user}_main")

    def apply(self, ctx: StepContext) -> None:
        if ctx.plan.databases < 1:
            return
        db_user, db_name = self.names(ctx)
        [result] = ctx.agent(
            [
                ssh.AgentAction(
                    name="db.account_ensure",
                    args={"account": _user(ctx), "user": db_user, "name": db_name},
                )
            ]
        )
        ctx.resource("database", db_name)
        ctx.resource("database_user", db_user)
        ctx.resource("created", bool(result.data.get("created")))
        ctx.resource("user_created", bool(result.data.get("user_created")))

    def undo(self, ctx: StepContext) -> None:
        runs = StepRun.objects.filter(operation=ctx.operation, step=self.name, direction="apply")
        if not any(r.resources.get("created") or r.resources.get("user_created") for r in runs):
            return  # nothing of this operation's own to remove
        db_user, db_name = self.names(ctx)
        ctx.agent(
            [
                ssh.AgentAction(
                    name="db.account_remove",
                    args={"account": _user(ctx), "user": db_user, "name": db_name},
                )
            ]
        )


class SiteConfig(Step):
    """The nginx server block for the domain and www, checked with nginx -t before reload."""

    name = "nginx_site"
    phase = "configuring"
    suspended = False

    def config(self, ctx: StepContext, *, suspended: bool) -> str:
        user, domain = _user(ctx), _domain(ctx)
        if suspended:
            return suspended_config(ctx.service, user, domain)
        return site_config(ctx.service, user, domain)

    def swap(self, ctx: StepContext, *, suspended: bool) -> None:
        user = _user(ctx)
        ctx.run(
            [
                cmd(
                    "hw_cfg",
                    "nginx",
                    site_path(user),
                    self.config(ctx, suspended=suspended),
                    label=f"stage, check (nginx -t) and swap in {site_path(user)}"
                    + (" (suspended page)" if suspended else ""),
                ),
            ]
        )
        ctx.resource("nginx_site", site_path(user))

    def apply(self, ctx: StepContext) -> None:
        self.swap(ctx, suspended=self.suspended)

    def undo(self, ctx: StepContext) -> None:
        ctx.run([cmd("hw_cfg", "nginx", site_path(_user(ctx)))])


class MeasureDisk(Step):
    """Disk usage of the account (the kernel here has no quotas: the panel enforces them)."""

    name = "measure_disk"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        result = ctx.run([cmd("du", "-sm", home(_user(ctx)))])
        try:
            ctx.service_updates["disk_used_mb"] = int(result.stdout.split()[0])
        except (IndexError, ValueError):
            raise PermanentStepError(f"unreadable disk usage: {result.stdout[:100]!r}") from None


class SuspendSite(SiteConfig):
    name = "suspend_site"
    suspended = True

    def undo(self, ctx: StepContext) -> None:
        self.swap(ctx, suspended=False)


class StopPool(PhpPool):
    name = "stop_pool"

    def apply(self, ctx: StepContext) -> None:
        PhpPool.undo(self, ctx)

    def undo(self, ctx: StepContext) -> None:
        PhpPool.apply(self, ctx)


class LockLogin(Step):
    """Lock logins (expired account, no shell) and end the account's processes."""

    name = "lock_login"

    def apply(self, ctx: StepContext) -> None:
        user = _user(ctx)
        ctx.run(
            [
                cmd("usermod", "--expiredate", "1", "--shell", "/usr/sbin/nologin", user),
                cmd("pkill", "-KILL", "-u", user, check=False),
            ]
        )

    def undo(self, ctx: StepContext) -> None:
        user = _user(ctx)
        ctx.run([cmd("usermod", "--expiredate", "", "--shell", "/bin/bash", user)])


def inverse(step: type[Step], name: str, *, compensate: bool = True) -> type[Step]:
    """A step doing ``step``'s undo as its apply (and its apply as undo, if ``compensate``)."""

    def apply(self: Step, ctx: StepContext) -> None:
        step.undo(step(), ctx)

    def undo(self: Step, ctx: StepContext) -> None:
        if compensate:
            step.apply(step(), ctx)

    return type(name, (Step,), {"name": name, "phase": step.phase, "apply": apply, "undo": undo})


class PlanPool(PhpPool):
    name = "plan_pool"

    def undo(self, ctx: StepContext) -> None:
        user = _user(ctx)
        ctx.run([cmd("hw_cfg", "fpm", pool_path(user), pool_config(user, ctx.previous_plan))])


class PlanLimits(AccountLimits):
    name = "plan_limits"

    def undo(self, ctx: StepContext) -> None:
        ctx.run(self.limits_for(ctx, ctx.previous_plan))


def _created(service: Service, operation: Operation) -> list[str]:
    service.activate()
    return ["state"]


def _create_rolled_back(service: Service, operation: Operation) -> list[str]:
    service.fail()
    return ["state"]


def _suspended(service: Service, operation: Operation) -> list[str]:
    service.suspend()
    return ["state"]


def _unsuspended(service: Service, operation: Operation) -> list[str]:
    service.unsuspend()
    return ["state"]


def _terminated(service: Service, operation: Operation) -> list[str]:
    service.terminate()
    return ["state"]


def _plan_changed(service: Service, operation: Operation) -> list[str]:
    service.plan_id = operation.params["plan_id"]
    return ["plan"]


register_kind(
    OperationKind(
        name=Operation.Kind.CREATE,
        steps=[
            ValidateAccount,
            LinuxUser,
            AccountLimits,
            PhpPool,
            AccountDatabase,
            SiteConfig,
            MeasureDisk,
        ],
        on_completed=_created,
        on_rolled_back=_create_rolled_back,
    )
)
register_kind(
    OperationKind(
        name=Operation.Kind.SUSPEND,
        steps=[ValidateAccount, SuspendSite, StopPool, LockLogin],
        on_completed=_suspended,
    )
)
register_kind(
    OperationKind(
        name=Operation.Kind.UNSUSPEND,
        steps=[
            ValidateAccount,
            inverse(LockLogin, "unlock_login"),
            inverse(StopPool, "start_pool"),
            inverse(SuspendSite, "restore_site"),
        ],
        on_completed=_unsuspended,
    )
)
# Terminating cannot be compensated (the files are gone); a failed terminate is retried.
register_kind(
    OperationKind(
        name=Operation.Kind.TERMINATE,
        steps=[
            ValidateAccount,
            inverse(SiteConfig, "remove_site", compensate=False),
            inverse(PhpPool, "remove_pool", compensate=False),
            inverse(AccountDatabase, "remove_database", compensate=False),
            inverse(LinuxUser, "remove_user", compensate=False),
            inverse(AccountLimits, "remove_limits", compensate=False),
        ],
        on_completed=_terminated,
    )
)
register_kind(
    OperationKind(
        name=Operation.Kind.CHANGE_PLAN,
        steps=[ValidateAccount, PlanPool, PlanLimits],
        on_completed=_plan_changed,
    )
)
