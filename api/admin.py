from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from accounts.roles import staff_may
from api.models import (
    ApiToken,
    ProvisioningClient,
    ProvisioningClientKey,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from api.services import provisioning_key_issue


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "customer", "user", "scope", "created_at", "last_used_at",
                    "revoked_at")  # fmt: skip
    list_filter = ("scope",)
    search_fields = ("name", "prefix", "customer__name", "user__email")
    readonly_fields = ("prefix", "secret_hash", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers create their own tokens in the panel


class KeyInline(admin.TabularInline):
    model = ProvisioningClientKey
    extra = 0
    fields = ("key_id", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("key_id", "created_at", "last_used_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ProvisioningClient)
class ProvisioningClientAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "created_at")
    inlines = [KeyInline]
    actions = ["issue_key", "rotate_key"]

    def _issue(
        self, request: HttpRequest, queryset: QuerySet[ProvisioningClient], grace: timedelta | None
    ) -> None:
        for client in queryset:
            actor = request.user if isinstance(request.user, User) else None
            issued = provisioning_key_issue(client=client, actor=actor, retire_others_after=grace)
            messages.warning(
                request,
                f"{client.name}: key {issued.public} secret {issued.secret} — copy it now, "
                "it is not shown again.",
            )

    def has_issue_key_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "api.issue_key_provisioningclient")

    @admin.action(description="Issue an additional key", permissions=["issue_key"])
    def issue_key(self, request: HttpRequest, queryset: QuerySet[ProvisioningClient]) -> None:
        self._issue(request, queryset, None)

    @admin.action(
        description="Rotate: issue a new key, old keys expire in 24 hours",
        permissions=["issue_key"],
    )
    def rotate_key(self, request: HttpRequest, queryset: QuerySet[ProvisioningClient]) -> None:
        self._issue(request, queryset, timedelta(hours=24))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "is_active", "created_at")


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "created_at")
    list_filter = ("name",)
    search_fields = ("key",)
    readonly_fields = ("name", "key", "payload", "created_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "endpoint", "status", "attempts", "response_status",
                    "last_attempt_at", "next_attempt_at")  # fmt: skip
    list_filter = ("status", "endpoint")
    readonly_fields = ("event", "endpoint", "status", "attempts", "last_attempt_at",
                       "next_attempt_at", "response_status", "response_body", "error")  # fmt: skip
    actions = ["replay"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "api.replay_webhookdelivery")

    @admin.action(description="Deliver again", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        from api.tasks import webhook_deliver

        ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            WebhookDelivery.objects.filter(pk__in=ids).update(
                status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
            )
            transaction.on_commit(lambda: [webhook_deliver.delay(pk) for pk in ids])
        messages.success(request, f"{len(ids)} deliveries queued again.")
