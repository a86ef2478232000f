"""Customer pages of the support desk. Every lookup goes through the user's customer,
so another customer's ticket or attachment is a 404, never data."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import customer_for_user
from hosting.lib.http import AuthedHttpRequest
from support import selectors, services
from support.forms import CustomerReplyForm, TicketOpenForm
from support.models import Attachment, TicketState

TICKETS_PER_PAGE = 25


def _attachment_response(attachment: Attachment) -> FileResponse:
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404("The file is no longer available") from None
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=attachment.original_name,
        content_type=attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def ticket_list(request: AuthedHttpRequest) -> HttpResponse:
    customer = customer_for_user(user=request.user)
    page = None
    if customer is not None:
        tickets = selectors.ticket_list_for_customer(customer=customer)
        page = Paginator(tickets, TICKETS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "support/ticket_list.html",
        {"customer": customer, "page": page, "tickets": page.object_list if page else []},
    )


@login_required
@require_http_methods(["GET", "POST"])
def ticket_new(request: AuthedHttpRequest) -> HttpResponse:
    customer = customer_for_user(user=request.user)
    if customer is None:
        raise Http404("No customer account")
    form = TicketOpenForm(
        request.POST or None,
        request.FILES or None,
        services=selectors.service_choices(customer=customer),
    )
    if request.method == "POST" and form.is_valid():
        try:
            ticket = services.ticket_open(
                customer=customer,
                user=request.user,
                department=form.cleaned_data["department"],
                subject=form.cleaned_data["subject"],
                body=form.cleaned_data["body"],
                priority=form.cleaned_data["priority"],
                files=form.cleaned_data["attachments"],
                service_id=form.cleaned_data.get("service"),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Ticket {ticket.reference} is open. We will answer soon.")
            return redirect("support:ticket", ticket_id=ticket.pk)
    return render(request, "support/ticket_new.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def ticket_detail(request: AuthedHttpRequest, ticket_id: int) -> HttpResponse:
    customer = customer_for_user(user=request.user)
    ticket = selectors.ticket_for_customer(customer=customer, ticket_id=ticket_id)
    form = CustomerReplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.ticket_reply_customer(
                ticket=ticket,
                user=request.user,
                body=form.cleaned_data["body"],
                files=form.cleaned_data["attachments"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Your reply is sent.")
            return redirect("support:ticket", ticket_id=ticket.pk)
    return render(
        request,
        "support/ticket_detail.html",
        {
            "ticket": ticket,
            "conversation": selectors.public_messages(ticket=ticket),
            "form": form,
            "can_reply": ticket.state != TicketState.CLOSED,
            "can_resolve": ticket.state
            in (TicketState.OPEN, TicketState.AWAITING_STAFF, TicketState.AWAITING_CUSTOMER),
        },
    )


@login_required
@require_POST
def ticket_resolve(request: AuthedHttpRequest, ticket_id: int) -> HttpResponse:
    customer = customer_for_user(user=request.user)
    ticket = selectors.ticket_for_customer(customer=customer, ticket_id=ticket_id)
    try:
        services.ticket_resolve(ticket=ticket, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Marked as resolved. Reply any time to reopen it.")
    return redirect("support:ticket", ticket_id=ticket.pk)


@login_required
def attachment_download(
    request: AuthedHttpRequest, ticket_id: int, attachment_id: int
) -> FileResponse:
    customer = customer_for_user(user=request.user)
    attachment = selectors.attachment_for_customer(
        customer=customer, ticket_id=ticket_id, attachment_id=attachment_id
    )
    return _attachment_response(attachment)
