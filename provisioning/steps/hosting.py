"""The hosting account on a node: Linux user, PHP-FPM pool, nginx server block, limits,
MariaDB database, disk usage (the operation kinds using them are in ``provisioning.kinds``).

Every step works through the node agent's actions (``deploy/node/agent/hwagent``): ``users``
(the Linux user and its home: ``/home/<user>`` root-owned 0751, the SFTP chroot, with
``public_html`` and ``tmp`` the customer's), ``pools`` (``/etc/php/8.2/fpm/pool.d/hw-<user>.conf``
on ``/run/php/hw-<user>.sock``), ``sites`` (``/etc/nginx/hostwright/sites/<user>.conf``, or the
suspended page), ``limits`` (the account's slice ``user-<uid>.slice`` on systemd nodes, where
the account's own PHP-FPM master runs; cgroups ``hostwright/<user>`` elsewhere) and
``usage``. The agent builds the configuration files from the typed values sent here and
checks them before loading them.
"""

from __future__ import annotations

import posixpath
from typing import Any

from billing.models import Plan
from provisioning import ssh, validators
from provisioning.errors import PermanentStepError
from provisioning.models import NodeResource, Service
from provisioning.ssh import action
from provisioning.steps.base import Step, StepContext

RUNTIME_CHECKS = ("MariaDB answering", "PHP-FPM running")


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


def owner_tag(service: Service) -> str:
    """The GECOS comment marking a Linux user as this service's, checked before any removal."""
    return f"hostwright service {service.pk}"


def listen_ip(service: Service) -> str:
    """The dedicated address the site listens on, or "" for the shared ones."""
    ip = service.ip
    return ip.address if ip is not None and ip.kind == "dedicated" else ""


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
        (check,) = ctx.agent([action("node.check")])
        # A daemon that is down (MariaDB, PHP-FPM) is for its own step to retry; what is
        # missing from the node's preparation is permanent.
        missing = [m for m in check.data.get("missing") or [] if m not in RUNTIME_CHECKS]
        if missing:
            raise PermanentStepError(
                f"node {ctx.node.name} is not prepared ({', '.join(missing)} missing): "
                "run deploy/node/bootstrap.sh on it",
                clean=True,
            )


def _user_args(ctx: StepContext) -> dict[str, Any]:
    return {"user": _user(ctx), "owner": owner_tag(ctx.service)}


class LinuxUser(Step):
    """The account's Linux user, its home (the SFTP chroot) and docroot, with the welcome page
    while the docroot is empty. No login shell unless the plan grants one."""

    name = "linux_user"

    def apply(self, ctx: StepContext) -> None:
        (result,) = ctx.agent(
            [
                action(
                    "user.ensure",
                    **_user_args(ctx),
                    login_shell=ctx.plan.shell_access,
                    welcome_html=welcome_page(_domain(ctx)),
                )
            ]
        )
        created = "user" in result.data.get("did", [])
        ctx.resource("linux_user", _user(ctx))
        if created:
            ctx.resource("linux_user_created", True)
        ctx.own(NodeResource.Kind.LINUX_USER, _user(ctx), created=created)

    def undo(self, ctx: StepContext) -> None:
        # A user this operation did not create (it was there before) stays.
        ctx.undo_owned(
            NodeResource.Kind.LINUX_USER,
            actions=lambda row: [
                action("user.remove", user=row.name, owner=owner_tag(ctx.service))
            ],
        )


class RemoveLinuxUser(Step):
    """Terminate: the account's user, processes and home go (not another owner's user: the
    agent checks the owner tag too)."""

    name = "remove_user"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.LINUX_USER)
        ctx.remove_owned(
            rows,
            [action("user.remove", user=row.name, owner=owner_tag(ctx.service)) for row in rows],
        )


class AccountLimits(Step):
    """CPU, memory, process limits and IO weight for the account: its slice on systemd nodes
    (``user-<uid>.slice``, where its PHP-FPM, cron jobs and SFTP sessions run), cgroup files
    elsewhere. A plan change sends the new plan's (``PlanLimits``)."""

    name = "limits"

    def limits_for(self, ctx: StepContext, plan: Plan) -> list[ssh.AgentAction]:
        return [
            action(
                "limits.set",
                user=_user(ctx),
                cpu_percent=validators.validate_positive_int(plan.cpu_percent, name="CPU share"),
                memory_mb=validators.validate_positive_int(plan.memory_mb, name="memory"),
                processes=validators.validate_positive_int(plan.processes, name="processes"),
                io_weight=validators.validate_positive_int(
                    plan.io_weight, name="IO weight", maximum=10_000
                ),
            )
        ]

    def apply(self, ctx: StepContext) -> None:
        ctx.agent(self.limits_for(ctx, ctx.plan))
        ctx.resource("limits", _user(ctx))
        ctx.own(NodeResource.Kind.LIMITS, _user(ctx))

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.LIMITS, actions=lambda row: [action("limits.remove", user=row.name)]
        )


class RemoveLimits(Step):
    """Terminate: the account's limits (slice or cgroups)."""

    name = "remove_limits"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.LIMITS)
        ctx.remove_owned(rows, [action("limits.remove", user=row.name) for row in rows])


class PhpPool(Step):
    """A PHP-FPM pool running as the account's user, checked with php-fpm -t before reload."""

    name = "php_pool"

    def pool_for(self, ctx: StepContext, plan: Plan) -> ssh.AgentAction:
        return action(
            "pool.ensure",
            user=_user(ctx),
            workers=validators.validate_positive_int(plan.php_workers, name="PHP workers"),
            memory_mb=validators.validate_positive_int(plan.memory_mb, name="memory"),
        )

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([self.pool_for(ctx, ctx.plan)])
        ctx.resource("php_pool", f"hw-{_user(ctx)}")
        ctx.own(NodeResource.Kind.POOL, _user(ctx))

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.POOL, actions=lambda row: [action("pool.remove", user=row.name)]
        )


class RemovePool(Step):
    """Terminate: the account's PHP-FPM pool."""

    name = "remove_pool"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.POOL)
        ctx.remove_owned(rows, [action("pool.remove", user=row.name) for row in rows])


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
            [action("db.account_ensure", account=_user(ctx), user=db_user, name=db_name)]
        )
        ctx.resource("database", db_name)
        ctx.resource("database_user", db_user)
        ctx.resource("created", bool(result.data.get("created")))
        ctx.resource("user_created", bool(result.data.get("user_created")))
        ctx.own(NodeResource.Kind.DATABASE, db_name, created=bool(result.data.get("created")))
        ctx.own(
            NodeResource.Kind.DATABASE_USER,
            db_user,
            created=bool(result.data.get("user_created")),
            detail={"databases": [db_name]},
        )

    def undo(self, ctx: StepContext) -> None:
        rows = ctx.made_here(NodeResource.Kind.DATABASE, NodeResource.Kind.DATABASE_USER)
        made = [r for r in rows if r.created]
        if len(made) == 2:
            # Both are this operation's: the account's ~/.my.cnf goes with them.
            db_user, db_name = self.names(ctx)
            ctx.remove_owned(
                made,
                [
                    ssh.AgentAction(
                        name="db.account_remove",
                        args={"account": _user(ctx), "user": db_user, "name": db_name},
                    )
                ],
            )
        else:
            ctx.remove_owned(made, [db_remove_action(_user(ctx), r) for r in made])
        ctx.disown([r for r in rows if not r.created])


def db_remove_action(account: str, row: NodeResource) -> ssh.AgentAction:
    """Drop a database or database user row's resource."""
    if row.kind == NodeResource.Kind.DATABASE:
        return ssh.AgentAction(name="db.remove", args={"account": account, "name": row.name})
    return ssh.AgentAction(name="db.user_remove", args={"account": account, "user": row.name})


class RemoveDatabases(Step):
    """Terminate: every database and database user the service holds (the account's own, the
    customer's, WordPress's), and ``~/.my.cnf`` with the account's own."""

    name = "remove_database"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.DATABASE, NodeResource.Kind.DATABASE_USER)
        ctx.remove_owned(rows, [db_remove_action(_user(ctx), r) for r in rows])


class SiteConfig(Step):
    """The nginx server block for the domain and www, checked with nginx -t before reload."""

    name = "nginx_site"
    phase = "configuring"
    suspended = False

    def swap(self, ctx: StepContext, *, suspended: bool) -> None:
        user = _user(ctx)
        (result,) = ctx.agent(
            [
                action(
                    "site.ensure",
                    user=user,
                    service=ctx.service.pk,
                    domain=_domain(ctx),
                    ip=listen_ip(ctx.service),
                    suspended=suspended,
                )
            ]
        )
        ctx.resource("nginx_site", result.data.get("path", user))

    def apply(self, ctx: StepContext) -> None:
        self.swap(ctx, suspended=self.suspended)
        ctx.own(NodeResource.Kind.SITE, _user(ctx), detail={"domain": _domain(ctx)})

    def undo(self, ctx: StepContext) -> None:
        ctx.undo_owned(
            NodeResource.Kind.SITE, actions=lambda row: [action("site.remove", user=row.name)]
        )


class RemoveSite(Step):
    """Terminate: the account's nginx server block."""

    name = "remove_site"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        rows = ctx.owned(NodeResource.Kind.SITE)
        ctx.remove_owned(rows, [action("site.remove", user=row.name) for row in rows])


class MeasureDisk(Step):
    """Disk usage of the account (the kernel here has no quotas: the panel enforces them)."""

    name = "measure_disk"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        (result,) = ctx.agent([action("usage.measure", users=[_user(ctx)], month="")])
        figures = result.data.get("accounts", {}).get(_user(ctx)) or {}
        if figures.get("disk_mb") is None:
            raise PermanentStepError("the node could not measure the account's disk usage")
        ctx.service_updates["disk_used_mb"] = int(figures["disk_mb"])


class SuspendSite(SiteConfig):
    name = "suspend_site"
    suspended = True

    def undo(self, ctx: StepContext) -> None:
        self.swap(ctx, suspended=False)


class StopPool(PhpPool):
    """Suspension: the pool stops (its row stays: the service still holds the pool)."""

    name = "stop_pool"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([action("pool.remove", user=_user(ctx))])

    def undo(self, ctx: StepContext) -> None:
        PhpPool.apply(self, ctx)


class LockLogin(Step):
    """Lock logins (expired account, no shell) and end the account's processes."""

    name = "lock_login"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([action("user.lock", **_user_args(ctx))])

    def undo(self, ctx: StepContext) -> None:
        ctx.agent([action("user.unlock", **_user_args(ctx), login_shell=ctx.plan.shell_access)])


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
        ctx.agent([self.pool_for(ctx, ctx.previous_plan)])


class PlanLimits(AccountLimits):
    name = "plan_limits"

    def undo(self, ctx: StepContext) -> None:
        ctx.agent(self.limits_for(ctx, ctx.previous_plan))


class PlanShell(Step):
    """A plan change may grant or withdraw the login shell."""

    name = "plan_shell"

    def apply(self, ctx: StepContext) -> None:
        ctx.agent([action("user.ensure", **_user_args(ctx), login_shell=ctx.plan.shell_access)])

    def undo(self, ctx: StepContext) -> None:
        ctx.agent(
            [action("user.ensure", **_user_args(ctx), login_shell=ctx.previous_plan.shell_access)]
        )
