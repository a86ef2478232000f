"""The support desk in the admin: the ticket page with the conversation, the customer
beside it, and reply or internal note from the page itself; the SLA view."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from accounts.models import AuditLog, User
from support import selectors, services
from support.forms import StaffReplyForm
from support.models import Attachment, CannedReply, Department, Ticket
from support.views import _attachment_response


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "is_active", "position")
    list_editable = ("is_active", "position")
    search_fields = ("name", "email")


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("title", "department")
    list_filter = ("department",)
    search_fields = ("title", "body")


def _duration(value: Any) -> str:
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    change_form_template = "admin/support/ticket/change_form.html"
    list_display = (
        "reference",
        "subject",
        "customer",
        "department",
        "priority",
        "state",
        "assigned_to",
        "updated_at",
        "first_response",
    )
    list_filter = ("state", "priority", "department", "assigned_to")
    search_fields = ("id", "subject", "customer__name", "customer__company", "messages__body")
    list_select_related = ("customer", "department", "assigned_to")
    date_hierarchy = "created_at"
    fields = ("customer", "service", "department", "priority", "subject", "assigned_to")
    # The customer and the service they chose are facts of the ticket, not settings.
    readonly_fields = ("customer", "service")
    actions = ("assign_to_me", "resolve_tickets", "close_tickets")

    @admin.display(description="ticket", ordering="id")
    def reference(self, obj: Ticket) -> str:
        return obj.reference

    @admin.display(description="first response")
    def first_response(self, obj: Ticket) -> str:
        return _duration(obj.first_response_time)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A ticket starts with a customer's message; staff answer, they do not open.
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Ticket], search_term: str
    ) -> tuple[QuerySet[Ticket], bool]:
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        return super().get_search_results(request, queryset, term)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "assigned_to":
            kwargs["queryset"] = User.objects.filter(is_staff=True, is_active=True).order_by(
                "email"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Ticket, form: ModelForm, change: bool) -> None:
        # Through the services: only changed fields are written (the state is
        # never saved from a possibly stale form) and each change is audited.
        actor = _user(request)
        details = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in ("department", "priority", "subject")
        }
        if details:
            services.ticket_update_details(ticket=obj, actor=actor, changes=details)
        if "assigned_to" in form.changed_data:
            services.ticket_assign(
                ticket=obj, actor=actor, assignee=form.cleaned_data["assigned_to"]
            )

    # The ticket page: conversation, notes, customer, reply.

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("sla/", wrap(self.sla_view), name="support_ticket_sla"),
            path("<int:ticket_id>/reply/", wrap(self.reply_view), name="support_ticket_reply"),
            path(
                "<int:ticket_id>/attachments/<int:attachment_id>/",
                wrap(self.attachment_view),
                name="support_ticket_attachment",
            ),
        ]
        return own + super().get_urls()

    def _desk_context(
        self, request: HttpRequest, ticket: Ticket, form: StaffReplyForm | None = None
    ) -> dict[str, Any]:
        canned = selectors.canned_replies_for(ticket=ticket)
        customer = ticket.customer
        context: dict[str, Any] = {
            "ticket": ticket,
            "conversation": selectors.all_messages(ticket=ticket),
            "can_reply": self.has_change_permission(request, ticket) and not ticket.is_closed,
            "reply_form": form or StaffReplyForm(canned=canned),
            "canned_bodies": {str(c.pk): c.body for c in canned},
            "customer": customer,
            "members": customer.memberships.select_related("user").order_by("role", "id"),
            "other_tickets": Ticket.objects.filter(customer=customer)
            .exclude(pk=ticket.pk)
            .order_by("-updated_at")[:5],
            "recent_activity": AuditLog.objects.filter(customer=customer).order_by("-at")[:8],
            "first_response": _duration(ticket.first_response_time),
            "resolution": _duration(ticket.resolution_time),
            "services": selectors.customer_services_with_operations(customer=customer),
        }
        return context

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        ticket = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if ticket is not None and self.has_view_or_change_permission(request, ticket):
            for key, value in self._desk_context(request, ticket).items():
                context.setdefault(key, value)
        return super().change_view(request, object_id, form_url, context)

    def reply_view(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        """Reply or internal note from the ticket page (POST only)."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:support_ticket_change", args=[ticket_id]))
        return self._reply(request, ticket_id)

    def _reply(self, request: HttpRequest, ticket_id: int) -> HttpResponse:
        ticket = get_object_or_404(Ticket.objects.select_related("customer"), pk=ticket_id)
        if not self.has_change_permission(request, ticket):
            raise PermissionDenied
        form = StaffReplyForm(
            request.POST, request.FILES, canned=selectors.canned_replies_for(ticket=ticket)
        )
        if form.is_valid():
            data = form.cleaned_data
            try:
                if data["kind"] == StaffReplyForm.KIND_NOTE:
                    services.ticket_add_note(
                        ticket=ticket,
                        user=_user(request),
                        body=data["body"],
                        files=data["attachments"],
                    )
                    self.message_user(request, "Internal note added.", messages.SUCCESS)
                else:
                    services.ticket_reply_staff(
                        ticket=ticket,
                        user=_user(request),
                        body=data["body"],
                        files=data["attachments"],
                        resolve=data["resolve"],
                    )
                    self.message_user(request, "Reply sent to the customer.", messages.SUCCESS)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                return HttpResponseRedirect(
                    reverse("admin:support_ticket_change", args=[ticket.pk])
                )
        # Show the page again with the form and its errors next to the fields.
        request.method = "GET"
        response = self.change_view(request, str(ticket.pk), extra_context={"reply_form": form})
        response.status_code = 400
        return response

    def attachment_view(
        self, request: HttpRequest, ticket_id: int, attachment_id: int
    ) -> FileResponse:
        ticket = get_object_or_404(Ticket, pk=ticket_id)
        if not self.has_view_or_change_permission(request, ticket):
            raise PermissionDenied
        attachment = Attachment.objects.filter(pk=attachment_id, message__ticket=ticket).first()
        if attachment is None:
            raise Http404("No such attachment")
        return _attachment_response(attachment)

    def sla_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = request.GET.get("days", "30")
        since = None
        if days.isdigit() and int(days) > 0:
            since = timezone.now() - timedelta(days=int(days))
        rows = [
            {
                "row": row,
                "median_first_response": _duration(row.median_first_response),
                "median_resolution": _duration(row.median_resolution),
                "target": _duration(row.target),
            }
            for row in selectors.sla_report(since=since)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Support SLA",
            "opts": self.opts,
            "rows": rows,
            "days": days if since else "all",
            "periods": [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("all", "all time")],
        }
        return TemplateResponse(request, "admin/support/ticket/sla.html", context)

    # Bulk actions from the ticket list.

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        for ticket in queryset:
            services.ticket_assign(ticket=ticket, actor=_user(request), assignee=_user(request))
        self.message_user(request, f"{queryset.count()} ticket(s) assigned to you.")

    @admin.action(description="Mark resolved", permissions=["change"])
    def resolve_tickets(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        done = 0
        for ticket in queryset:
            try:
                services.ticket_resolve(ticket=ticket, actor=_user(request))
                done += 1
            except ValidationError:
                continue
        self.message_user(request, f"{done} ticket(s) resolved.")

    @admin.action(description="Close", permissions=["change"])
    def close_tickets(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        for ticket in queryset:
            services.ticket_close(ticket=ticket, actor=_user(request))
        self.message_user(request, f"{queryset.count()} ticket(s) closed.")
