from __future__ import annotations

from typing import Any

from allauth.account.admin import EmailAddressAdmin as BaseEmailAddressAdmin
from allauth.account.models import EmailAddress
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm as BaseUserChangeForm
from django.contrib.auth.forms import UserCreationForm as BaseUserCreationForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import URLPattern, path

from accounts.models import AuditLog, Customer, Membership, User

# allauth's e-mail admin offers its action to anyone who can see the list; here it needs the
# right to change addresses, like every other action (allauth's admin is loaded first).
admin.site.unregister(EmailAddress)


@admin.register(EmailAddress)
class EmailAddressAdmin(BaseEmailAddressAdmin):
    @admin.action(description="Mark selected e-mail addresses as verified", permissions=["change"])
    def make_verified(self, request: HttpRequest, queryset: QuerySet[EmailAddress]) -> None:
        super().make_verified(request, queryset)


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserChangeForm(BaseUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password", "full_name")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    filter_horizontal = ("groups",)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "company", "country", "currency", "created_at")
    search_fields = ("name", "company", "tax_id", "memberships__user__email")
    list_filter = ("country", "currency")
    inlines = [MembershipInline]
    change_form_template = "admin/accounts/customer/change_form.html"

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        """Country and VAT id go through the billing rule (format, check digits, VIES); staff
        may change the country after invoices exist, customers may not."""
        from billing.errors import BillingError
        from billing.vat import customer_tax_identity_change

        tax_fields = {"country", "tax_id"} & set(form.changed_data)
        if not change or not tax_fields:
            super().save_model(request, obj, form, change)
            return
        country, tax_id = obj.country, obj.tax_id
        before = Customer.objects.get(pk=obj.pk)
        obj.country, obj.tax_id = before.country, before.tax_id
        super().save_model(request, obj, form, change)
        try:
            check = customer_tax_identity_change(
                customer=obj,
                country=country,
                tax_id=tax_id,
                actor=request.user if request.user.is_authenticated else None,
                by_staff=True,
            )
        except BillingError as exc:
            messages.error(request, f"Country and VAT id were not changed: {exc}")
            return
        if check is not None:
            messages.info(request, f"VAT id {check.tax_id}: {check.get_status_display()}.")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/impersonate/",
                self.admin_site.admin_view(self.impersonate_view),
                name="accounts_customer_impersonate",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The customer page: services, operations, invoices, payments, tickets, activity."""
        from panel.selectors import customer_overview

        extra = dict(extra_context or {})
        customer = self.get_object(request, object_id)
        if customer is not None:
            extra.update(customer_overview(customer=customer))
            extra["may_impersonate"] = self.has_impersonate_permission(request)
        return super().change_view(request, object_id, form_url, extra)

    def has_impersonate_permission(self, request: HttpRequest) -> bool:
        from panel.impersonation import may_impersonate

        return may_impersonate(request.user)  # type: ignore[arg-type]

    def impersonate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Sign in as the customer's owner (audited); the banner leads back here."""
        from panel.impersonation import ImpersonationRefused, impersonation_start

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = get_object_or_404(Customer, pk=object_id)
        if not (
            self.has_view_permission(request, customer) and self.has_impersonate_permission(request)
        ):
            raise PermissionDenied
        try:
            impersonation_start(request=request, staff=request.user, customer=customer)  # type: ignore[arg-type]
        except ImpersonationRefused as exc:
            messages.error(request, str(exc))
            return redirect("admin:accounts_customer_change", customer.pk)
        return redirect("home")


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_label", "action", "object_type", "object_id", "customer")
    list_filter = ("action",)
    search_fields = ("actor_label", "action", "object_id")
    date_hierarchy = "at"

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
