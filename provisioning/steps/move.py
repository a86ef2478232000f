"""Moving a hosting account to another node: the steps of the ``move`` operation kind.

The account is built on the new node while the old one keeps serving (Linux user, limits,
PHP-FPM pool, a first copy of its data, DNS zone, nginx site), then the site is frozen on the
old node (its suspended page, PHP stopped), its data copied once more, the new node's answer
checked against what the old one served, and only then DNS and the service switched to the new
node; the old node is cleaned last. The time from the freeze to the switch is the site's
downtime, recorded on the operation (an event and the switch step's record).

Data travel as a package the node agent makes on the old node (``move.pack``: the home as the
account's user archives it, database dumps, database users with their password hashes,
``~/.my.cnf``, the domain's mail and DKIM key, its certificate, the account's backups). The
worker carries it in chunks (``move.read`` there, ``move.write`` here) and the new node's
agent checks every checksum before it unpacks (``move.unpack``). Nothing is a shell command.

A failure before the switch rolls back: everything made on the new node is removed (each
step's undo, in reverse) and the old node is unfrozen, untouched otherwise. Steps pick their
node with ``node_for``: the operation's params name the old (``source_node_id``) and the new
(``target_node_id``) node, and a step on the new node sees the service as it will be there
(that node, the address chosen for it). Cron jobs are the panel's rows: paused on the old
node at the freeze, set up on the new one after the switch.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import ssl
import time
from typing import Any, ClassVar

from provisioning import validators
from provisioning.errors import PermanentStepError, TransientStepError
from provisioning.models import (
    CronJob,
    IPAddress,
    Node,
    NodeResource,
    Operation,
    Service,
    StepRun,
)
from provisioning.resources import cron
from provisioning.resources.agent import applied
from provisioning.resources.steps import DnsZone, MailLimits
from provisioning.ssh import action
from provisioning.steps.base import Step, StepContext
from provisioning.steps.hosting import (
    AccountLimits,
    LinuxUser,
    PhpPool,
    SiteConfig,
    ValidateAccount,
    listen_ip,
    owner_tag,
)

HTTP_TIMEOUT = 20


def move_id(operation: Operation) -> str:
    """The name of the move's package on both nodes (one per operation)."""
    return f"op{operation.pk}"


def _node(operation: Operation, key: str) -> Node:
    return Node.objects.get(pk=operation.params[key])


def _ip(operation: Operation, key: str) -> IPAddress | None:
    ip_id = operation.params.get(key)
    return IPAddress.objects.get(pk=ip_id) if ip_id else None


def site_address(service: Service) -> str:
    """Where the site answers HTTP: its address, or its node's."""
    ip = service.ip
    return str(ip.address if ip is not None else service.node.address if service.node else "")


class OnSource:
    """A step on the node the account leaves (the service as it was there)."""

    side: ClassVar[str] = "source"

    @classmethod
    def node_for(cls, operation: Operation) -> Node | None:
        return _node(operation, f"{cls.side}_node_id")

    @classmethod
    def context(cls, *, operation: Operation, step_run: StepRun) -> StepContext:
        node = _node(operation, f"{cls.side}_node_id")
        ctx = StepContext(operation=operation, step_run=step_run, node=node)
        service = copy.copy(operation.service)
        service.node = node
        service.ip = _ip(operation, f"{cls.side}_ip_id")
        ctx.service = service
        return ctx


class OnTarget(OnSource):
    """A step on the node the account moves to (the service as it will be there)."""

    side = "target"


def _nodes(ctx: StepContext) -> tuple[Node, Node]:
    return _node(ctx.operation, "source_node_id"), _node(ctx.operation, "target_node_id")


def _account(ctx: StepContext) -> str:
    return validators.validate_username(ctx.service.username)


def _domain(ctx: StepContext) -> str:
    return validators.validate_domain(ctx.service.domain)


def carry(ctx: StepContext, *, final: bool = False) -> dict[str, Any]:
    """Pack the account on the old node, carry the package to the new one in chunks, unpack it
    there, and discard both copies of the package. Answers what was packed and unpacked.
    ``final``: only what can change while the site is frozen (home, databases, stored mail)."""
    source, target = _nodes(ctx)
    account, package = _account(ctx), move_id(ctx.operation)
    ident: dict[str, Any] = {"account": account, "move_id": package}
    started = time.monotonic()
    [packed] = ctx.agent(
        [action("move.pack", **ident, domain=_domain(ctx), final=final)], node=source
    )
    packed_s = time.monotonic() - started
    for entry in packed.data.get("files", []):
        offset = 0
        while True:
            [chunk] = ctx.agent(
                [action("move.read", **ident, name=entry["name"], offset=offset)], node=source
            )
            [written] = ctx.agent(
                [
                    action(
                        "move.write",
                        secret=("data",),
                        **ident,
                        name=entry["name"],
                        offset=offset,
                        data=chunk.data["data"],
                    )
                ],
                node=target,
            )
            offset = int(written.data["size"])
            if chunk.data.get("eof"):
                break
        if offset != int(entry["size"]):
            raise TransientStepError(f"the move package's {entry['name']} arrived incomplete")
    carried_s = time.monotonic() - started
    [unpacked] = ctx.agent([action("move.unpack", **ident)], node=target)
    ctx.agent([action("move.discard", **ident)], node=source)
    ctx.agent([action("move.discard", **ident)], node=target)
    return {
        "bytes": packed.data.get("bytes", 0),
        "databases": unpacked.data.get("databases", []),
        "db_users": unpacked.data.get("db_users", []),
        "mail": bool(unpacked.data.get("mail")),
        "certificate": bool(unpacked.data.get("certificate")),
        "https": bool(unpacked.data.get("https")),
        "pack_s": round(packed_s, 3),
        "carry_s": round(carried_s - packed_s, 3),
        "total_s": round(time.monotonic() - started, 3),
    }


def _remove_from(ctx: StepContext, node: Node, *, zone: bool) -> list[str]:
    """Remove everything of the account from ``node``, checking each part; answers what could
    not be removed (each part is tried even when another failed)."""
    account, domain = _account(ctx), _domain(ctx)
    user: dict[str, Any] = {"user": account, "owner": owner_tag(ctx.service)}
    problems: list[str] = []

    def attempt(actions: list[Any]) -> list[Any]:
        results = ctx.agent(actions, node=node, check=False)
        for a, r in zip(actions, results, strict=False):
            if not r.ok and not r.skipped:
                problems.append(f"{a.name}: {(r.error or {}).get('message', 'failed')}")
        return results

    attempt([action("cert.https_remove", account=account)])
    attempt([action("site.remove", user=account)])
    attempt([action("pool.remove", user=account)])
    [found] = attempt([action("db.inventory", account=account)])
    if found.ok:
        attempt(
            [action("db.remove", account=account, name=n) for n in found.data.get("databases", [])]
            + [
                action("db.user_remove", account=account, user=u)
                for u in found.data.get("users", {})
            ]
        )
    attempt([action("backup.remove_all", account=account)])
    attempt([action("mail.domain.remove", domain=domain, purge=True)])
    attempt([action("cert.remove", domain=domain), action("mail.sni.refresh")])
    if zone:
        attempt([action("dns.zone_remove", domain=domain)])
    jobs = CronJob.objects.filter(service_id=ctx.service.pk).values_list("pk", flat=True)
    if jobs:
        attempt([cron._remove_action(ctx, pk) for pk in jobs])
    attempt([action("sftp.disable", user=account)])
    attempt([action("move.discard", account=account, move_id=move_id(ctx.operation))])
    attempt([action("user.remove", **user)])
    attempt([action("limits.remove", user=account)])
    return problems


class MoveCheck(OnTarget, ValidateAccount):
    """The new node is prepared, is not the old one, and has no account of that name."""

    name = "move_check"

    def apply(self, ctx: StepContext) -> None:
        source, target = _nodes(ctx)
        if ctx.operation.service.node_id != source.pk:
            raise PermanentStepError("the account is no longer on the node it was to leave")
        if source.pk == target.pk:
            raise PermanentStepError("the account is on that node already", clean=True)
        ValidateAccount.apply(self, ctx)
        [zone] = ctx.agent([action("dns.zone_get", domain=_domain(ctx))])
        if zone.data.get("exists"):
            raise PermanentStepError(
                f"{target.name} already serves a zone for {_domain(ctx)}", clean=True
            )
        [found] = ctx.agent([action("inventory.list", kinds=["user"], account=_account(ctx))])
        if (found.data.get("found") or {}).get("user"):
            raise PermanentStepError(
                f"{target.name} already has a Linux user {_account(ctx)}", clean=True
            )


class MoveUser(OnTarget, LinuxUser):
    name = "move_user"


class MoveLimits(OnTarget, AccountLimits):
    name = "move_limits"


class MovePool(OnTarget, PhpPool):
    name = "move_pool"


class MoveCopy(OnTarget, Step):
    """A first copy of the account's data while the old node still serves the site."""

    name = "move_copy"

    def apply(self, ctx: StepContext) -> None:
        ctx.resource("copy", carry(ctx))
        own_carried(ctx)

    def undo(self, ctx: StepContext) -> None:
        """Everything of the account's data on the new node (its databases and database
        users, mail, certificate, backups, package): none of it was there before the move."""
        source = _node(ctx.operation, "source_node_id")
        ident: dict[str, Any] = {"account": _account(ctx), "move_id": move_id(ctx.operation)}
        ctx.agent([action("move.discard", **ident)], node=source, check=False)
        account, domain = _account(ctx), _domain(ctx)
        [found] = ctx.agent([action("db.inventory", account=account)])
        actions = [
            action("db.remove", account=account, name=n) for n in found.data.get("databases", [])
        ]
        actions += [
            action("db.user_remove", account=account, user=u) for u in found.data.get("users", {})
        ]
        actions += [
            action("backup.remove_all", account=account),
            action("mail.domain.remove", domain=domain, purge=True),
            action("cert.https_remove", account=account),
            action("cert.remove", domain=domain),
            action("mail.sni.refresh"),
            action("move.discard", **ident),
        ]
        ctx.agent(actions)
        ctx.disown(ctx.made_here())


# What the package carries: the service's rows of these kinds on the old node become its rows
# on the new one (the steps that build the user, limits, pool, zone and site record theirs).
CARRIED = (
    NodeResource.Kind.DATABASE,
    NodeResource.Kind.DATABASE_USER,
    NodeResource.Kind.MAIL_DOMAIN,
    NodeResource.Kind.MAILBOX,
    NodeResource.Kind.CERTIFICATE,
    NodeResource.Kind.HTTPS,
    NodeResource.Kind.BACKUP,
    NodeResource.Kind.RECORD_SET,
)


def own_carried(ctx: StepContext) -> None:
    """Record on the new node what the copy brought there, as the old node's rows list it."""
    source = _node(ctx.operation, "source_node_id")
    rows = NodeResource.objects.filter(
        service_id=ctx.service.pk,
        node=source,
        kind__in=CARRIED,
        state__in=NodeResource.LIVE_STATES,
    ).order_by("id")
    for row in rows:
        ctx.own(row.kind, row.name, created=True, detail=row.detail)


def _zone_rrsets(ctx: StepContext, node: Node) -> list[dict[str, Any]]:
    [zone] = ctx.agent([action("dns.zone_get", domain=_domain(ctx))], node=node)
    if not zone.data.get("exists"):
        return []
    return list(zone.data.get("rrsets", []))


def _readdressed(
    rrsets: list[dict[str, Any]], old: str, new: str, *, types: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The RRsets of ``types`` that name the old address, naming the new one instead."""
    changed = []
    for r in rrsets:
        if r["type"] not in types:
            continue
        contents = [
            new
            if c == old
            else c.replace(f"ip4:{old}", f"ip4:{new}").replace(f"ip6:{old}", f"ip6:{new}")
            for c in r["contents"]
        ]
        if contents != list(r["contents"]):
            changed.append({**r, "contents": contents})
    return changed


class MoveZone(OnTarget, DnsZone):
    """The domain's zone on the new node: every record of the old node's zone, with the old
    address replaced by the new one (SOA and NS are the new node's own)."""

    name = "move_zone"

    def apply(self, ctx: StepContext) -> None:
        DnsZone.apply(self, ctx)
        source = _node(ctx.operation, "source_node_id")
        source_ip = _ip(ctx.operation, "source_ip_id")
        old = str(source_ip.address if source_ip is not None else source.address)
        new = site_address(ctx.service)
        records = [r for r in _zone_rrsets(ctx, source) if r["type"] not in ("SOA", "NS")]
        moved = {(r["name"], r["type"]): r for r in records}
        for r in _readdressed(records, old, new, types=("A", "AAAA", "TXT")):
            moved[(r["name"], r["type"])] = r
        if moved:
            ctx.agent(
                [
                    action(
                        "dns.records", domain=_domain(ctx), replace=list(moved.values()), delete=[]
                    )
                ]
            )
        ctx.resource("records", len(moved))

    def undo(self, ctx: StepContext) -> None:
        """The zone on the new node goes, also when this step stopped before it was recorded
        (the check made sure the new node had none before the move)."""
        DnsZone.undo(self, ctx)
        ctx.agent([action("dns.zone_remove", domain=_domain(ctx))])


class MoveMailLimits(OnTarget, MailLimits):
    """The plan's sending limits on the new node (the mail tables came with the package)."""

    name = "move_mail_limits"

    def apply(self, ctx: StepContext) -> None:
        if applied(ctx, MoveCopy.name, "copy") and _copied(ctx).get("mail"):
            MailLimits.apply(self, ctx)

    def undo(self, ctx: StepContext) -> None:
        """The mail domain goes with the copy's undo."""


def _copied(ctx: StepContext) -> dict[str, Any]:
    run = (
        StepRun.objects.filter(
            operation=ctx.operation, step=MoveCopy.name, direction="apply", status="succeeded"
        )
        .order_by("-id")
        .first()
    )
    return dict((run.resources or {}).get("copy") or {}) if run else {}


class MoveSite(OnTarget, SiteConfig):
    """The site's server block on the new node (with HTTPS when it had it on the old one)."""

    name = "move_site"

    def apply(self, ctx: StepContext) -> None:
        SiteConfig.apply(self, ctx)
        if _copied(ctx).get("https"):
            ip = listen_ip(ctx.service)
            ctx.agent(
                [
                    action(
                        "cert.https_ensure",
                        account=_account(ctx),
                        domain=_domain(ctx),
                        listen_ip=ip or None,
                    )
                ]
            )

    def undo(self, ctx: StepContext) -> None:
        ctx.agent(
            [
                action("cert.https_remove", account=_account(ctx)),
                action("site.remove", user=_account(ctx)),
            ]
        )
        ctx.disown(ctx.made_here())


def fetch(address: str, domain: str, *, https: bool = False) -> tuple[int, str]:
    """The site's front page from one address (status, SHA-256 of the body), over HTTPS (the
    site's name sent by SNI; the certificate is the one being moved, not checked here) or
    plain HTTP."""
    conn: http.client.HTTPConnection
    if https:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = _SniConnection(address, domain, context=context, timeout=HTTP_TIMEOUT)
    else:
        conn = http.client.HTTPConnection(address, 80, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Host": domain, "User-Agent": "hostwright-move"})
        response = conn.getresponse()
        return response.status, hashlib.sha256(response.read()).hexdigest()
    except OSError as exc:
        raise TransientStepError(f"{address} did not answer for {domain}: {exc}") from None
    finally:
        conn.close()


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to an address, naming the site (SNI) rather than the address."""

    def __init__(self, address: str, domain: str, **kw: Any) -> None:
        super().__init__(address, 443, **kw)
        self._sni = domain

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._sni)  # type: ignore[attr-defined]


def front_page(address: str, domain: str, *, https: bool | None = None) -> dict[str, Any]:
    """What the site serves at ``/``; a site that sends plain HTTP to HTTPS is read there."""
    if https is None:
        status, digest = fetch(address, domain)
        https = status in (301, 302, 307, 308)
        if not https:
            return {"status": status, "sha256": digest, "https": False}
    status, digest = fetch(address, domain, https=https)
    return {"status": status, "sha256": digest, "https": https}


class MoveFreeze(OnSource, Step):
    """The site as the old node serves it is noted (twice: a page that changes on every
    request is compared by status only), then frozen: its suspended page, PHP stopped. The
    downtime starts here."""

    name = "move_freeze"

    def apply(self, ctx: StepContext) -> None:
        earlier = _frozen(ctx, any_run=True)
        if earlier.get("page"):
            # A retry: the site may be frozen already; what it served is what was noted.
            ctx.resource("page", earlier["page"])
            ctx.resource("frozen_at", earlier["frozen_at"])
        else:
            address, domain = site_address(ctx.service), _domain(ctx)
            page = front_page(address, domain)
            again = front_page(address, domain, https=page["https"])
            page["static"] = (page["status"], page["sha256"]) == (again["status"], again["sha256"])
            ctx.resource("page", page)
            ctx.resource("frozen_at", time.time())
            # Noted before the freeze, so that a retry finds it.
            ctx.step_run.save(update_fields=["resources"])
        SiteConfig().swap(ctx, suspended=True)
        ctx.agent([action("pool.remove", user=_account(ctx)), *_cron_actions(ctx, paused=True)])

    def undo(self, ctx: StepContext) -> None:
        PhpPool.apply(PhpPool(), ctx)
        SiteConfig().swap(ctx, suspended=False)
        ctx.agent(_cron_actions(ctx, paused=False))


def _cron_actions(ctx: StepContext, *, paused: bool) -> list[Any]:
    """The account's cron jobs as its rows say (``paused``: kept, but not running)."""
    jobs = CronJob.objects.filter(service_id=ctx.service.pk).order_by("pk")
    actions = []
    for job in jobs:
        values = cron._job_params(job)
        if paused:
            values["enabled"] = False
        actions.append(cron._ensure_action(ctx, values))
    return actions


class MoveSync(OnTarget, Step):
    """The final copy, of the frozen account."""

    name = "move_sync"

    def apply(self, ctx: StepContext) -> None:
        ctx.resource("sync", carry(ctx, final=True))
        own_carried(ctx)

    def undo(self, ctx: StepContext) -> None:
        """What the final copy brought goes with the first copy's undo."""
        ctx.disown(ctx.made_here())


def _frozen(ctx: StepContext, *, any_run: bool = False) -> dict[str, Any]:
    """What the freeze noted (the page, when): its successful run's, or any run's."""
    runs = StepRun.objects.filter(
        operation=ctx.operation, step=MoveFreeze.name, direction="apply"
    ).order_by("-id")
    if not any_run:
        runs = runs.filter(status="succeeded")
    for run in runs:
        if (run.resources or {}).get("page"):
            return dict(run.resources)
    return {}


class MoveVerify(OnTarget, Step):
    """The new node serves the site: its front page, asked from the new address with the
    site's name, is what the old node served before the freeze."""

    name = "move_verify"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        page = _frozen(ctx).get("page") or {}
        answer = front_page(site_address(ctx.service), _domain(ctx), https=page.get("https"))
        status, digest = answer["status"], answer["sha256"]
        ctx.resource("answer", answer)
        if status != page.get("status") or (page.get("static") and digest != page.get("sha256")):
            raise TransientStepError(
                f"the new node answers {status} with other content than the old node served "
                f"({page.get('status')})"
            )


class MoveSwitch(OnSource, Step):
    """DNS and the service to the new node: the old node's zone names the new address too (for
    resolvers that still ask it), and the service's node and address change. The downtime ends
    here and is recorded."""

    name = "move_switch"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        target = _node(ctx.operation, "target_node_id")
        target_ip = _ip(ctx.operation, "target_ip_id")
        old = site_address(ctx.service)
        new = str(target_ip.address if target_ip is not None else target.address)
        records = _readdressed(_zone_rrsets(ctx, ctx.node), old, new, types=("A", "AAAA"))
        if records:
            [result] = ctx.agent(
                [action("dns.records", domain=_domain(ctx), replace=records, delete=[])]
            )
            ctx.resource("previous", result.data.get("previous", []))
        ctx.service_updates["node"] = target
        ctx.service_updates["ip"] = target_ip
        frozen_at = _frozen(ctx).get("frozen_at")
        if frozen_at:
            downtime = round(time.time() - float(frozen_at), 3)
            ctx.resource("downtime_s", downtime)
            from provisioning.workflow import note

            note(
                ctx.operation,
                f"site downtime {downtime:.2f} s: frozen on {ctx.node.name}, served by "
                f"{target.name} at {new} when DNS switched",
                actor_label="worker",
            )

    def undo(self, ctx: StepContext) -> None:
        runs = StepRun.objects.filter(
            operation=ctx.operation, step=self.name, direction="apply"
        ).order_by("-id")
        previous = next((r.resources["previous"] for r in runs if "previous" in r.resources), None)
        if previous:
            ctx.agent([action("dns.records", domain=_domain(ctx), replace=previous, delete=[])])


class MoveCron(OnTarget, Step):
    """The account's cron jobs on the new node, once it serves the site (they never run on both
    nodes: the freeze paused them on the old one)."""

    name = "move_cron"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        actions = _cron_actions(ctx, paused=False)
        if actions:
            ctx.agent(actions)
        ctx.resource("cron_jobs", len(actions))

    def undo(self, ctx: StepContext) -> None:
        jobs = CronJob.objects.filter(service_id=ctx.service.pk).values_list("pk", flat=True)
        if jobs:
            ctx.agent([cron._remove_action(ctx, pk) for pk in jobs])


class MoveCleanup(OnSource, Step):
    """The old node gives up the account, only now that the new one serves it. What cannot be
    removed is listed on the operation for staff; it never undoes the move."""

    name = "move_cleanup"
    phase = "configuring"

    def apply(self, ctx: StepContext) -> None:
        problems = _remove_from(ctx, ctx.node, zone=True)
        ctx.resource("left_on_old_node", problems)
        if not problems:
            # The old node holds nothing of the account now: its rows there are let go of
            # (with leftovers, they stay for staff to see what is still there).
            ctx.disown(ctx.owned())
        if problems:
            from provisioning.workflow import note

            note(
                ctx.operation,
                f"{ctx.node.name} still holds parts of the account (remove them by hand): "
                + "; ".join(problems[:8]),
                actor_label="worker",
            )


MOVE_STEPS: tuple[type[Step], ...] = (
    MoveCheck,
    MoveUser,
    MoveLimits,
    MovePool,
    MoveCopy,
    MoveZone,
    MoveMailLimits,
    MoveSite,
    MoveFreeze,
    MoveSync,
    MoveVerify,
    MoveSwitch,
    MoveCron,
    MoveCleanup,
)


def moved_back(service: Service, operation: Operation) -> list[str]:
    """A move rolled back: the service is where it was (its node and address)."""
    service.node_id = operation.params["source_node_id"]
    service.ip_id = operation.params.get("source_ip_id")
    return ["node", "ip"]
