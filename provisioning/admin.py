"""Staff pages: operations with their timeline, services with their actions, nodes with health.

Actions call services; refusals are shown as messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import User
from accounts.roles import staff_may
from provisioning import nodes, selectors, services
from provisioning.models import (
    DriftFinding,
    IPAddress,
    Node,
    NodeGroup,
    NodeResource,
    Operation,
    Service,
    StepRun,
    SuspensionHold,
)


def _actor(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _each(
    request: HttpRequest, queryset: QuerySet[Any], label: str, fn: Callable[[Any], object]
) -> None:
    done = 0
    for obj in queryset:
        try:
            fn(obj)
            done += 1
        except ValidationError as exc:
            messages.error(request, f"{obj}: {'; '.join(exc.messages)}")
    if done:
        messages.success(request, f"{label}: {done} queued.")


class IPAddressInline(admin.TabularInline):
    model = IPAddress
    extra = 0
    fields = ("address", "kind", "pool", "last_assigned_at")
    readonly_fields = ("last_assigned_at",)


@admin.register(NodeGroup)
class NodeGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "policy", "reserved")
    list_filter = ("policy", "reserved")
    filter_horizontal = ("plans",)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "address",
        "port",
        "group",
        "status",
        "roles",
        "usage",
        "health_ok",
        "health_checked_at",
    )
    list_filter = ("status", "group")
    search_fields = ("name", "address")
    readonly_fields = (
        "host_key",
        "fingerprint",
        "health_report",
        "health_checked_at",
        "created_at",
    )
    exclude = ("health",)
    inlines = [IPAddressInline]
    actions = ["check_now", "drain", "activate", "repin_host_key"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        return selectors.nodes_with_usage()

    @admin.display(description="accounts")
    def usage(self, obj: Node) -> str:
        used = getattr(obj, "accounts", 0) or 0
        disk = getattr(obj, "disk_used", 0) or 0
        return f"{used} / {obj.capacity_accounts} accounts, {disk} / {obj.capacity_disk_mb} MB"

    @admin.display(boolean=True, description="healthy")
    def health_ok(self, obj: Node) -> bool | None:
        return obj.health.get("ok") if obj.health else None

    @admin.display(description="host key fingerprint")
    def fingerprint(self, obj: Node) -> str:
        from provisioning import ssh

        return ssh.fingerprint(ssh.parse_host_key(obj.host_key)) if obj.host_key else "-"

    @admin.display(description="health")
    def health_report(self, obj: Node) -> SafeString:
        h = obj.health or {}
        if not h:
            return format_html("<em>{}</em>", "not checked yet")
        return format_html(
            "<p>{}</p><p>missing: {}</p><p>disk free: {} MB, load: {}</p><p>{}</p>",
            "ready" if h.get("ok") else "NOT READY",
            ", ".join(h.get("missing", [])) or "nothing",
            h.get("disk_free_mb", "?"),
            h.get("load", "?"),
            h.get("error", ""),
        )

    def has_check_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.check_node")

    def has_set_status_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.set_status_node")

    @admin.action(description="Check the selected nodes now", permissions=["check"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            report = nodes.node_check_run(node_id=node.pk)
            level = messages.SUCCESS if report["ok"] else messages.WARNING
            missing = ", ".join(report["missing"]) or report["error"] or "nothing"
            self.message_user(request, f"{node.name}: missing {missing}", level)

    def has_repin_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.repin_node")

    @admin.action(
        description="Pin the host key each presents now (after checking the servers)",
        permissions=["repin"],
    )
    def repin_host_key(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            try:
                node = nodes.node_repin(node=node, actor=_actor(request))
            except ValidationError as exc:
                self.message_user(request, f"{node.name}: {exc.messages[0]}", messages.ERROR)
                continue
            self.message_user(request, f"{node.name}: pinned {self.fingerprint(node)}")

    @admin.action(description="Drain (no new accounts)", permissions=["set_status"])
    def drain(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            nodes.node_set_status(node=node, status=Node.Status.DRAINING, actor=_actor(request))

    @admin.action(description="Make active", permissions=["set_status"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            nodes.node_set_status(node=node, status=Node.Status.ACTIVE, actor=_actor(request))


class OperationInline(admin.TabularInline):
    model = Operation
    extra = 0
    fields = ("kind", "state", "reason", "created_at", "finished_at")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MailLimitFilter(admin.SimpleListFilter):
    """Accounts whose mail the plan's hourly limit refused (in the last two days)."""

    title = "mail sending limit"
    parameter_name = "mail_limit"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("reached", "reached"), ("near", "80% or more used now")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Service]) -> QuerySet[Service]:
        if self.value() == "reached":
            return queryset.filter(mail_refused_count__gt=0)
        if self.value() == "near":
            return queryset.filter(
                mail_sent_last_hour__gte=F("plan__mail_per_hour") * 8 / 10
            ).exclude(mail_sent_last_hour=0)
        return queryset


class NodeResourceInline(admin.TabularInline):
    """What the service holds on its node, one row per resource, with the operation that
    made it: what terminate removes, and nothing else. Written by the steps only."""

    model = NodeResource
    extra = 0
    fields = ("kind", "name", "node", "state", "created", "operation", "created_at", "removed_by")
    readonly_fields = fields
    can_delete = False
    ordering = ("state", "kind", "name")
    verbose_name = "resource on the node"
    verbose_name_plural = "resources on the node (present, being removed, gone)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[NodeResource]:
        return super().get_queryset(request).select_related("node", "operation", "removed_by")


class SuspensionHoldInline(admin.TabularInline):
    """Why the service is (or was) suspended: every hold with who placed and lifted it."""

    model = SuspensionHold
    extra = 0
    fields = (
        "reason",
        "is_open",
        "note",
        "placed_at",
        "placed_by_label",
        "lifted_at",
        "lifted_by_label",
    )
    readonly_fields = fields
    can_delete = False
    verbose_name = "suspension hold"
    verbose_name_plural = "suspension holds (suspended while any is open)"

    @admin.display(boolean=True, description="open")
    def is_open(self, obj: SuspensionHold) -> bool:
        return obj.is_open

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # holds are placed and lifted through the services, never typed in


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = (
        "domain",
        "customer",
        "plan",
        "node",
        "username",
        "state",
        "suspension_reasons",
        "disk_used_mb",
        "mail_sending",
    )
    list_filter = ("state", "node", MailLimitFilter)
    list_select_related = ("customer", "plan__product", "node")
    search_fields = ("domain", "username", "customer__name")
    readonly_fields = (
        "customer",
        "plan",
        "node",
        "ip",
        "username",
        "domain",
        "state",
        "suspension_reasons",
        "extra_disk_mb",
        "disk_used_mb",
        "memory_used_mb",
        "bandwidth_used_bytes",
        "cpu_used_percent",
        "usage_measured_at",
        "mail_sending",
        "mail_refused_at",
        "created_at",
        "updated_at",
    )
    inlines = [SuspensionHoldInline, NodeResourceInline, OperationInline]

    @admin.display(description="mail sent (last hour)")
    def mail_sending(self, obj: Service) -> str:
        if obj.mail_sent_last_hour is None:
            return "-"
        text = f"{obj.mail_sent_last_hour} of {obj.plan.mail_per_hour}"
        if obj.mail_refused_count:
            text += f"; {obj.mail_refused_count} refused by the limit"
        return text

    actions = ["suspend", "unsuspend", "terminate", "move_to_node"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are ordered through the service layer, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # terminate removes an account from its node; deleting the row would not

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.suspend_service")

    def has_terminate_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.terminate_service")

    def has_move_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.move_service")

    @admin.action(description="Suspend (staff)", permissions=["suspend"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Service]) -> None:
        _each(
            request,
            queryset,
            "Suspend",
            lambda s: services.service_suspend(service=s, reason="staff", actor=_actor(request)),
        )

    @admin.action(description="Lift the staff suspension", permissions=["suspend"])
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[Service]) -> None:
        _each(
            request,
            queryset,
            "Unsuspend",
            lambda s: services.service_unsuspend(service=s, reason="staff", actor=_actor(request)),
        )

    @admin.action(
        description="Terminate (removes the account from its node)", permissions=["terminate"]
    )
    def terminate(self, request: HttpRequest, queryset: QuerySet[Service]) -> None:
        _each(
            request,
            queryset,
            "Terminate",
            lambda s: services.service_terminate(service=s, actor=_actor(request)),
        )

    @admin.action(description="Move to another node", permissions=["move"])
    def move_to_node(
        self, request: HttpRequest, queryset: QuerySet[Service]
    ) -> TemplateResponse | None:
        """Asks for the node first (a page of its own), then queues one move per service."""
        form = MoveForm(request.POST if "node" in request.POST else None)
        if form.is_valid():
            node = form.cleaned_data["node"]
            _each(
                request,
                queryset,
                f"Move to {node}",
                lambda s: services.service_move(service=s, node=node, actor=_actor(request)),
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Move to another node",
            "services": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/provisioning/service/move.html", context)


class MoveForm(forms.Form):
    node = forms.ModelChoiceField(
        queryset=Node.objects.filter(status=Node.Status.ACTIVE),
        help_text="The account is copied there, DNS switched, and the old node cleaned once "
        "the new one serves the site.",
    )


def _step_html(run: StepRun) -> SafeString:
    commands = format_html_join(
        "",
        "<li><code>{}</code> → exit {} ({} ms)</li>",
        ((c.get("cmd", ""), c.get("exit", ""), c.get("ms", "")) for c in run.commands),
    )
    return format_html(
        "<strong>{} {}</strong> attempt {} on {}: {}{}<ul>{}</ul>{}{}{}",
        run.step,
        run.direction,
        run.attempt,
        run.node or "-",
        run.status,
        f" ({run.duration_ms} ms)" if run.duration_ms is not None else "",
        commands,
        format_html("<p>error: {}</p>", run.error) if run.error else "",
        format_html("<pre>{}</pre>", run.stderr_tail[-1500:]) if run.stderr_tail else "",
        format_html("<p>resources: {}</p>", run.resources) if run.resources else "",
    )


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ("pk", "kind", "service", "state", "current_step", "created_at", "finished_at")
    list_filter = ("state", "kind")
    search_fields = ("service__domain", "service__username")
    readonly_fields = (
        "service",
        "kind",
        "state",
        "params",
        "reason",
        "error",
        "actor",
        "current_step",
        "resumes",
        "heartbeat_at",
        "created_at",
        "started_at",
        "finished_at",
        "timeline",
    )
    actions = ["retry", "rollback"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of what was done on a node

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.retry_operation")

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.rollback_operation")

    @admin.display(description="timeline")
    def timeline(self, obj: Operation) -> SafeString:
        rows = []
        for row in selectors.operation_timeline(operation=obj):
            if row["type"] == "event":
                e = row["event"]
                body = format_html(
                    "{} → <strong>{}</strong> by {}: {}",
                    e.from_state or "·",
                    e.to_state,
                    e.actor_label,
                    e.detail,
                )
            else:
                body = _step_html(row["run"])
            rows.append((row["at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], body))
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.action(description="Retry", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        _each(
            request,
            queryset,
            "Retry",
            lambda o: services.operation_retry(operation=o, actor=_actor(request)),
        )

    @admin.action(description="Roll back", permissions=["rollback"])
    def rollback(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        _each(
            request,
            queryset,
            "Rollback",
            lambda o: services.operation_rollback(operation=o, actor=_actor(request)),
        )


@admin.register(IPAddress)
class IPAddressAdmin(admin.ModelAdmin):
    list_display = ("address", "node", "kind", "pool", "last_assigned_at")
    list_filter = ("kind", "node")


@admin.register(DriftFinding)
class DriftFindingAdmin(admin.ModelAdmin):
    """What the drift check found on nodes; repair queues a converging operation."""

    list_display = ("node", "kind", "name", "problem", "service", "detected_at",
                    "last_seen_at", "resolved_at", "repair_operation")  # fmt: skip
    list_filter = ("problem", "kind", "node", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "service__domain")
    readonly_fields = [f.name for f in DriftFinding._meta.fields]
    actions = ["repair", "check_nodes_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_repair_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.repair_driftfinding")

    def has_check_node_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "provisioning.check_node")

    @admin.action(
        description="Repair: run the account's steps again (never undone)", permissions=["repair"]
    )
    def repair(self, request: HttpRequest, queryset: QuerySet[DriftFinding]) -> None:
        from provisioning.drift import drift_repair

        _each(
            request,
            queryset.filter(resolved_at__isnull=True),
            "Repair",
            lambda f: drift_repair(finding=f, actor=_actor(request)),
        )

    @admin.action(description="Check these findings' nodes now", permissions=["check_node"])
    def check_nodes_now(self, request: HttpRequest, queryset: QuerySet[DriftFinding]) -> None:
        from provisioning.tasks import drift_check

        node_ids = sorted(set(queryset.values_list("node_id", flat=True)))
        for node_id in node_ids:
            drift_check.delay(node_id)
        messages.success(request, f"Drift check queued for {len(node_ids)} node(s).")
