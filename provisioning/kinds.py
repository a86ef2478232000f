"""Every operation kind and its whole step list, in order.

This is the only place a kind's steps are declared: step modules
(``provisioning.steps.hosting``, ``provisioning.resources.steps``,
``provisioning.resources.certificates``, ``provisioning.drift``) define steps and nothing
else, and no module adds to or reorders another's list. ``get_kind`` (in
``provisioning.steps.base``) reads this table; the workflow turns a kind's steps into a
Celery chain.

A kind's ``on_completed`` and ``on_rolled_back`` say what happens to the service when the
operation ends (each returns the service fields it changed).
"""

from __future__ import annotations

from provisioning.drift import REPAIR, converging
from provisioning.models import Operation, Service
from provisioning.resources import certificates as cert
from provisioning.resources import cron
from provisioning.resources import steps as res
from provisioning.steps import hosting as web
from provisioning.steps import move
from provisioning.steps.base import OperationKind, register_kind


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


inverse = web.inverse

ALL: tuple[OperationKind, ...] = (
    # --- the account's life ---------------------------------------------------------------
    OperationKind(
        name=Operation.Kind.CREATE,
        steps=(
            web.ValidateAccount,
            web.LinuxUser,
            web.AccountLimits,
            web.PhpPool,
            web.AccountDatabase,
            res.DnsZone,
            res.MailDomain,
            res.DkimKey,
            web.SiteConfig,
            res.VerifyDns,
            web.MeasureDisk,
        ),
        on_completed=_created,
        on_rolled_back=_create_rolled_back,
    ),
    OperationKind(
        name=Operation.Kind.SUSPEND,
        steps=(web.ValidateAccount, web.SuspendSite, web.StopPool, web.LockLogin),
        on_completed=_suspended,
    ),
    OperationKind(
        name=Operation.Kind.UNSUSPEND,
        steps=(
            web.ValidateAccount,
            inverse(web.LockLogin, "unlock_login"),
            inverse(web.StopPool, "start_pool"),
            inverse(web.SuspendSite, "restore_site"),
        ),
        on_completed=_unsuspended,
    ),
    # Terminating cannot be compensated (the files are gone); a failed terminate is retried.
    # Each step removes what the service's rows (``NodeResource``) list, and nothing else.
    OperationKind(
        name=Operation.Kind.TERMINATE,
        steps=(
            web.ValidateAccount,
            web.RemoveSite,
            web.RemovePool,
            web.RemoveDatabases,
            res.RemoveSftp,
            res.RemoveAccountData,
            res.RemoveMailDomain,
            res.RemoveZone,
            web.RemoveLinuxUser,
            web.RemoveLimits,
        ),
        on_completed=_terminated,
    ),
    OperationKind(
        name=Operation.Kind.CHANGE_PLAN,
        steps=(web.ValidateAccount, web.PlanPool, web.PlanLimits, web.PlanShell, res.MailLimits),
        on_completed=_plan_changed,
    ),
    # Drift repair: the account's create steps again; they converge and are never undone.
    OperationKind(
        name=REPAIR,
        steps=(
            web.ValidateAccount,
            *(
                converging(s)
                for s in (
                    web.LinuxUser,
                    web.AccountLimits,
                    web.PhpPool,
                    web.AccountDatabase,
                    web.SiteConfig,
                )
            ),
        ),
    ),
    # --- the account's resources (params hold validated values and password hashes) -------
    OperationKind(
        name="certificate_issue",
        steps=(cert.CertificatePrecheck, cert.Certificate, cert.Https),
        description="Issue (or renew) the site's certificate and serve HTTPS",
    ),
    OperationKind(name="dns_records", steps=(res.DnsRecords,), description="Change DNS records"),
    OperationKind(
        name="database_create",
        steps=(res.DatabaseLimit, res.Database, res.DatabaseUser),
        description="Create a database and its user",
    ),
    OperationKind(
        name="database_delete", steps=(res.DropDatabase,), description="Delete a database"
    ),
    OperationKind(
        name="database_password",
        steps=(res.DatabasePassword,),
        description="Change a database password",
    ),
    OperationKind(
        name="mailbox_create",
        steps=(res.MailboxLimit, res.Mailbox),
        description="Create a mailbox",
    ),
    OperationKind(
        name="mailbox_delete", steps=(res.DeleteMailbox,), description="Delete a mailbox"
    ),
    OperationKind(
        name="mailbox_password",
        steps=(res.MailboxPassword,),
        description="Change a mailbox password",
    ),
    OperationKind(name="forwarder_set", steps=(res.Forwarder,), description="Set a mail forwarder"),
    OperationKind(
        name="forwarder_delete",
        steps=(res.DeleteForwarder,),
        description="Delete a mail forwarder",
    ),
    OperationKind(
        name="mailbox_quota", steps=(res.MailboxQuota,), description="Change a mailbox quota"
    ),
    OperationKind(
        name="mail_catchall", steps=(res.CatchAll,), description="Set the catch-all address"
    ),
    OperationKind(name="mail_autoreply", steps=(res.AutoReply,), description="Set an auto-reply"),
    OperationKind(name="dkim_rotate", steps=(res.DkimKey,), description="Rotate the DKIM key"),
    OperationKind(
        name="wordpress_install",
        steps=(res.DatabaseLimit, res.WordPress),
        description="Install WordPress",
    ),
    OperationKind(name="backup_create", steps=(res.Backup,), description="Back up the account"),
    OperationKind(name="backup_restore", steps=(res.Restore,), description="Restore a backup"),
    OperationKind(name="sftp_enable", steps=(res.Sftp,), description="Allow SFTP access"),
    OperationKind(name="sftp_disable", steps=(res.SftpOff,), description="Turn SFTP access off"),
    OperationKind(
        name="cron_ensure",
        steps=(cron.CronEnsure,),
        description="Add or change a cron job",
        on_completed=cron.cron_ensured,
        on_rolled_back=cron.cron_ensure_rolled_back,
    ),
    OperationKind(
        name="cron_remove",
        steps=(cron.CronRemove,),
        description="Remove a cron job",
        on_completed=cron.cron_removed,
    ),
    # --- the account's node (staff) --------------------------------------------------------
    OperationKind(
        name="move",
        steps=move.MOVE_STEPS,
        on_rolled_back=move.moved_back,
        description="Move the account to another node",
    ),
)

for _kind in ALL:
    register_kind(_kind)
