"""Billing in the admin: catalog, invoices with their payments and credit notes, staff
actions (manual payment, cancel by credit note, refund), runs, webhook events, settings."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.roles import staff_may
from billing import services
from billing.errors import BillingError
from billing.gateways.base import GatewayError
from billing.models import (
    Addon,
    AddonPrice,
    BillingRun,
    BillingSettings,
    ChargeAttempt,
    Coupon,
    CreditEntry,
    CreditNote,
    Invoice,
    InvoiceLine,
    Order,
    Payment,
    PaymentMethod,
    Plan,
    Price,
    Product,
    StripeEvent,
    Subscription,
    TaxRate,
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "is_active", "position"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "product", "disk_mb", "sites", "is_active", "position"]
    list_filter = ["product", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PriceInline]


class AddonPriceInline(admin.TabularInline):
    model = AddonPrice
    extra = 0


@admin.register(Addon)
class AddonAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "is_active"]
    inlines = [AddonPriceInline]


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "kind",
        "value",
        "currency",
        "times_redeemed",
        "max_redemptions",
        "valid_until",
        "is_active",
    ]
    readonly_fields = ["times_redeemed"]


@admin.register(TaxRate)
class TaxRateAdmin(admin.ModelAdmin):
    list_display = ["country", "name", "rate", "in_eu"]


class LineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ["description", "quantity", "unit_amount", "amount"]


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ["created_at", "kind", "gateway", "amount", "currency", "external_id", "reference"]


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = ["number", "issue_date", "total", "disposition", "reason"]


class AttemptInline(ReadOnlyInline):
    model = ChargeAttempt
    fields = ["number", "run_date", "status", "external_id", "error"]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "customer",
        "kind",
        "state",
        "total",
        "currency",
        "issue_date",
        "due_date",
    ]
    list_filter = ["state", "kind", "currency"]
    search_fields = ["number", "customer__name", "customer__company"]
    date_hierarchy = "issue_date"
    inlines = [LineInline, PaymentInline, CreditNoteInline, AttemptInline]
    actions = ["mark_paid_manually", "charge_saved_card", "cancel_unpaid_by_credit_note"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Issued invoices are documents: nothing on them is edited here.
        return [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _collect(self, request: HttpRequest, queryset: QuerySet[Invoice], gateway: str) -> None:
        for invoice in queryset:
            try:
                services.invoice_collect(
                    invoice=invoice,
                    gateway=gateway,
                    reference=f"by {request.user}",
                    actor=request.user,  # type: ignore[arg-type]
                )
            except (BillingError, GatewayError) as exc:
                text = " ".join(exc.messages) if isinstance(exc, BillingError) else exc.message
                self.message_user(request, f"{invoice}: {text}", messages.ERROR)
            else:
                self.message_user(request, f"{invoice}: payment recorded.", messages.SUCCESS)

    def has_mark_paid_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "billing.mark_paid_invoice")

    def has_charge_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "billing.charge_invoice")

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "billing.credit_invoice")

    @admin.action(
        description="Mark paid (bank transfer or cash received)", permissions=["mark_paid"]
    )
    def mark_paid_manually(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        self._collect(request, queryset, "manual")

    @admin.action(description="Charge the customer's saved card now", permissions=["charge"])
    def charge_saved_card(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        self._collect(request, queryset, "stripe")

    @admin.action(description="Cancel the unpaid amount by a credit note", permissions=["credit"])
    def cancel_unpaid_by_credit_note(
        self, request: HttpRequest, queryset: QuerySet[Invoice]
    ) -> None:
        for invoice in queryset:
            try:
                services.credit_note_issue(
                    invoice=invoice,
                    amount=invoice.amount_due,
                    reason=f"Cancelled by {request.user}",
                    disposition="cancel",
                    actor=request.user,  # type: ignore[arg-type]
                )
            except BillingError as exc:
                self.message_user(request, f"{invoice}: {' '.join(exc.messages)}", messages.ERROR)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "customer", "state", "created_at", "paid_at", "fulfilled_at"]
    list_filter = ["state"]
    search_fields = ["domain", "customer__name"]
    readonly_fields = [
        "customer",
        "plan",
        "cycle",
        "currency",
        "domain",
        "coupon",
        "recurring_amount",
        "state",
        "created_at",
        "created_by",
        "paid_at",
        "fulfilled_at",
        "fulfil_error",
    ]
    exclude = ["addons"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "service",
        "customer",
        "plan",
        "cycle",
        "amount",
        "next_due_date",
        "state",
        "auto_renew",
        "cancel_at_period_end",
    ]
    list_filter = ["state", "cycle", "auto_renew", "cancel_at_period_end"]
    search_fields = ["service__domain", "customer__name"]
    fields = [
        "service",
        "customer",
        "plan",
        "cycle",
        "currency",
        "amount",
        "period_start",
        "next_due_date",
        "auto_renew",
        "cancel_at_period_end",
        "payment_method",
        "state",
    ]
    readonly_fields = ["service", "customer", "plan", "cycle", "currency", "amount", "state"]


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["created_at", "invoice", "kind", "gateway", "amount", "currency", "external_id"]
    list_filter = ["gateway", "kind"]
    search_fields = ["external_id", "invoice__number"]
    actions = ["refund_in_full"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a payment happened; a refund or a credit note answers it

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return staff_may(request.user, "billing.refund_payment")

    @admin.action(
        description="Refund to the card in full (with a credit note)", permissions=["refund"]
    )
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            try:
                services.payment_refund(
                    payment=payment,
                    amount=payment.amount,
                    reason=f"Refunded by {request.user}",
                    actor=request.user,  # type: ignore[arg-type]
                )
            except BillingError as exc:
                self.message_user(request, f"{payment}: {' '.join(exc.messages)}", messages.ERROR)


@admin.register(CreditNote)
class CreditNoteAdmin(admin.ModelAdmin):
    list_display = ["number", "invoice", "total", "currency", "disposition", "issue_date"]
    readonly_fields = [f.name for f in CreditNote._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a tax document, numbered without gaps


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "customer", "amount", "currency", "kind", "memo"]
    list_filter = ["kind"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the ledger is corrected by a new entry, never by removing one


@admin.register(PaymentMethod)
class PaymentMethodAdmin(admin.ModelAdmin):
    list_display = ["customer", "brand", "last4", "is_default", "created_at"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "status", "deliveries", "received_at", "result"]
    list_filter = ["status", "type"]
    search_fields = ["event_id"]
    readonly_fields = [f.name for f in StripeEvent._meta.fields]


@admin.register(BillingRun)
class BillingRunAdmin(admin.ModelAdmin):
    list_display = ["run_date", "status", "attempts", "started_at", "finished_at", "counts"]
    readonly_fields = [f.name for f in BillingRun._meta.fields]


@admin.register(BillingSettings)
class BillingSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return not BillingSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
