"""The customer panel's pages: thin views over ``panel.selectors`` and the apps' services.

Every view that names a service looks it up through the signed-in user's customer, so a
stranger gets a 404 for another customer's page or action, never its data.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Customer
from hosting.lib.http import AuthedHttpRequest
from hosting.lib.units import format_mb
from panel import files, forms, resources, selectors
from panel.impersonation import impersonation_end
from provisioning.models import Service


def _service(request: AuthedHttpRequest, service_id: int) -> tuple[Customer, Service]:
    service = selectors.service_for_user(user=request.user, service_id=service_id)
    return service.customer, service


def _service_page(
    request: AuthedHttpRequest,
    customer: Customer,
    service: Service,
    *,
    bound: dict[str, resources.ResourceForm] | None = None,
    extra: dict[str, object] | None = None,
    status: int = 200,
) -> HttpResponse:
    operations = selectors.operations_for_service(service=service)
    current = next((op for op in operations if op.is_running), None)
    latest = operations[0] if operations else None
    shown = current or latest
    progress = None
    if shown is not None:
        progress = selectors.operation_progress(
            operation=selectors.operation_with_runs(operation=shown)
        )
    context: dict[str, object] = {
        "customer": customer,
        "service": service,
        "usage": selectors.service_usage(service=service),
        "history": [(op, selectors.kind_label(op.kind)) for op in operations],
        "progress": progress,
        "failure": selectors.failure_in_words(progress) if progress and progress.failed else "",
        "subscription": selectors.subscription_for_service(service=service),
        "suspension": [selectors.suspension_label(r) for r in service.suspension_reasons or []],
        "resources": (found := resources.service_resources(service=service)),
        "databases": selectors.service_databases(service=service, resources=found),
        "sftp_home": selectors.sftp_path(service=service),
        "sftp_webroot": selectors.sftp_path(service=service, home_relative="public_html"),
        "busy": current is not None,
        "dns_form": resources.DnsRecordForm(),
        "database_form": resources.DatabaseForm(),
        "mailbox_form": resources.MailboxForm(),
        "forwarder_form": resources.ForwarderForm(),
        "mail_settings": resources.mail_client_settings(service=service),
        "dmarc_choices": resources.DmarcForm.base_fields["policy"].choices,  # type: ignore[attr-defined]
        "wordpress_form": resources.WordPressForm(),
        "sftp_form": resources.SftpForm(),
        "cron_jobs": (jobs := list(service.cron_jobs.all())),
        "cron_limit": service.plan.cron_jobs,
        "cron_room": len(jobs) < service.plan.cron_jobs,
        "cron_form": resources.CronJobForm(initial={"output": "logged", "enabled": True}),
        "log_kinds": [("access", "Access log"), ("error", "Error log"), ("cron", "Cron log")],
        "sftp_port": settings.SFTP_PORT,
        "backup_keep": settings.BACKUP_KEEP,
    }
    context.update(bound or {})
    context.update(extra or {})
    response = render(request, "panel/service_detail.html", context, status=status)
    if "wordpress_password" in context:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def service_detail(request: AuthedHttpRequest, service_id: int) -> HttpResponse:
    customer, service = _service(request, service_id)
    password = request.session.pop(_wordpress_password_key(service), None)
    extra = {"wordpress_password": password} if password else None
    return _service_page(request, customer, service, extra=extra)


def _wordpress_password_key(service: Service) -> str:
    return f"hw_wordpress_password_{service.pk}"


@login_required
@require_POST
def resource_action(request: AuthedHttpRequest, service_id: int, action: str) -> HttpResponse:
    """Add or remove a DNS record, database or mailbox, or issue a certificate.

    The change runs as an operation; the answer is a redirect to the service page, which
    shows its progress (so reloading that page never posts the form again). A refusal is
    shown next to the field it concerns, on the service page, with what was typed kept.
    """
    customer, service = _service(request, service_id)
    entry = resources.RESOURCE_ACTIONS.get(action)
    if entry is None:
        raise Http404("No such action")
    form_class, slot = entry
    form = form_class(request.POST)
    if service.state != Service.State.ACTIVE:
        form.add_error(None, "Changes can be made while the account is active.")
    elif form.is_valid() and form.save(service=service, actor=request.user) is not None:
        if isinstance(form, resources.WordPressForm):
            # The admin password is shown once, on the page this redirect leads to: it waits
            # in the server-side session (never in a cookie) and is removed when shown.
            request.session[_wordpress_password_key(service)] = form.password
            messages.success(request, "WordPress is being installed; follow it below.")
        else:
            messages.success(request, "Your change is on its way; follow it below.")
        return redirect(f"{reverse('panel:service', args=[service.pk])}#progress-title")
    if slot == "certificate_form" or not action.endswith("-add"):
        for text in [str(e) for errors in form.errors.values() for e in errors]:
            messages.error(request, text)
        return redirect("panel:service", service.pk)
    return _service_page(request, customer, service, bound={slot: form}, status=400)


@login_required
@require_GET
def operation_progress(
    request: AuthedHttpRequest, service_id: int, operation_id: int
) -> HttpResponse:
    """The steps of one operation; polled every second by htmx while it runs."""
    _customer, service = _service(request, service_id)
    operation = selectors.operation_for_service(service=service, operation_id=operation_id)
    progress = selectors.operation_progress(operation=operation)
    response = render(
        request,
        "panel/_progress.html",
        {
            "service": service,
            "progress": progress,
            "failure": selectors.failure_in_words(progress) if progress.failed else "",
        },
    )
    if progress.finished and request.headers.get("HX-Request"):
        # The page around the partial (state badge, usage) changed too: let it refresh once.
        response["HX-Trigger"] = "operation-finished"
    return response


@login_required
def plan_change(request: AuthedHttpRequest, service_id: int) -> HttpResponse:
    """Other plans with the prorated price for the rest of the term; confirming changes."""
    from billing.errors import BillingError
    from billing.services import subscription_change_plan

    customer, service = _service(request, service_id)
    subscription = selectors.subscription_for_service(service=service)
    if subscription is None or not selectors.is_owner(customer=customer, user=request.user):
        raise Http404("No plan to change")
    quotes = selectors.plan_change_quotes(subscription=subscription)
    error = ""
    if request.method == "POST":
        chosen = next((q for q in quotes if str(q.plan.pk) == request.POST.get("plan")), None)
        if chosen is None:
            error = "Choose one of the plans below."
        else:
            try:
                invoice = subscription_change_plan(
                    subscription=subscription, plan=chosen.plan, actor=request.user
                )
            except BillingError as exc:
                error = " ".join(exc.messages)
            else:
                if invoice is not None and invoice.is_open:
                    messages.info(
                        request, f"Pay invoice {invoice.number} and the plan changes at once."
                    )
                    return redirect("billing:invoice", pk=invoice.pk)
                messages.success(request, f"Your account is moving to {chosen.plan.name}.")
                return redirect("panel:service", service.pk)
    return render(
        request,
        "panel/plan_change.html",
        {"service": service, "subscription": subscription, "quotes": quotes, "error": error},
        status=400 if error else 200,
    )


@login_required
@require_GET
def log_tail(request: AuthedHttpRequest, service_id: int, kind: str) -> HttpResponse:
    """The tail of the site's access or error log, loaded into the service page on demand."""
    _customer, service = _service(request, service_id)
    if kind not in files.LOG_KINDS:
        raise Http404("No such log")
    error = ""
    text = ""
    try:
        text = files.log_tail(service=service, kind=kind)
    except files.FileError as exc:
        error = str(exc)
    return render(
        request,
        "panel/_log.html",
        {"service": service, "kind": kind, "text": text, "error": error},
    )


# --- the file manager -------------------------------------------------------------------------


def _files_url(service: Service, path: str) -> str:
    url = reverse("panel:files", args=[service.pk])
    return f"{url}?{urlencode({'path': path})}" if path else url


def _file_error(request: HttpRequest, exc: files.FileError) -> None:
    messages.error(request, str(exc))


def _files_page(
    request: AuthedHttpRequest,
    service: Service,
    path: str,
    *,
    offset: int = 0,
    bound: dict[str, forms.FileActionForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    entries: list[files.Entry] = []
    more: int | None = None
    error = ""
    try:
        entries, more = files.list_dir(service=service, path=path, offset=offset)
    except files.FileError as exc:
        error = str(exc)
    crumbs = []
    acc = ""
    for part in path.split("/") if path else []:
        acc = files.join(acc, part)
        crumbs.append((part, acc))
    context: dict[str, object] = {
        "service": service,
        "path": path,
        "parent": files.parent(path),
        "crumbs": crumbs,
        "entries": entries,
        "more": more,
        "offset": offset,
        "error": error,
        "mkdir_form": forms.MkdirForm(prefix="mkdir"),
        "touch_form": forms.NewFileForm(prefix="touch"),
        "upload_form": forms.UploadForm(),
        "max_upload_mb": files.MAX_UPLOAD // (1024 * 1024),
        "max_upload_mb_text": format_mb(files.MAX_UPLOAD // (1024 * 1024)),
    }
    context.update(bound or {})
    return render(request, "panel/files.html", context, status=status)


@login_required
@require_GET
def file_browser(request: AuthedHttpRequest, service_id: int) -> HttpResponse:
    _customer, service = _service(request, service_id)
    try:
        path = files.clean_path(request.GET.get("path", ""))
        offset = max(0, int(request.GET.get("offset", "0") or 0))
    except (files.FileError, ValueError):
        raise Http404("No such folder") from None
    return _files_page(request, service, path, offset=offset)


# Forms shown at the top of the folder: their errors go next to their field.
_TOOL_PREFIXES = {"mkdir": "mkdir", "touch": "touch", "upload": None}


@login_required
@require_POST
def file_action(request: AuthedHttpRequest, service_id: int, action: str) -> HttpResponse:
    """Create, rename, delete, chmod and upload; each goes back to the folder."""
    _customer, service = _service(request, service_id)
    form_class = forms.FILE_ACTION_FORMS.get(action)
    if form_class is None:
        raise Http404("No such action")
    form = form_class(request.POST, request.FILES, prefix=_TOOL_PREFIXES.get(action))
    folder = files.clean_path(request.POST.get("folder", "")) if _safe(request) else ""
    is_xhr = request.headers.get("X-Requested-With") == "XMLHttpRequest"
    if form.is_valid():
        try:
            done = form.apply(service=service, folder=folder)
        except files.FileError as exc:
            field = next(iter(form.fields)) if action in _TOOL_PREFIXES else None
            form.add_error(field, str(exc))
        else:
            if is_xhr:
                return HttpResponse(done)
            messages.success(request, done)
            return redirect(_files_url(service, folder))
    if is_xhr:
        return HttpResponse(" ".join(_form_errors(form)), status=400)
    if action in _TOOL_PREFIXES:
        return _files_page(request, service, folder, bound={f"{action}_form": form}, status=400)
    for text in _form_errors(form):
        messages.error(request, text)
    return redirect(_files_url(service, folder))


def _safe(request: HttpRequest) -> bool:
    try:
        files.clean_path(request.POST.get("folder", ""))
    except files.FileError:
        return False
    return True


def _form_errors(form: forms.forms.Form) -> list[str]:
    return [str(e) for errors in form.errors.values() for e in errors]


@login_required
@require_GET
def file_download(request: AuthedHttpRequest, service_id: int) -> HttpResponse:
    _customer, service = _service(request, service_id)
    try:
        path = files.clean_path(request.GET.get("path", ""), allow_root=False)
        data = files.read_file(service=service, path=path)
    except files.FileError as exc:
        _file_error(request, exc)
        return redirect(_files_url(service, files.parent(request.GET.get("path", ""))))
    name = path.rsplit("/", 1)[-1]
    response = HttpResponse(data, content_type="application/octet-stream")
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    response["Content-Disposition"] = f'attachment; filename="{ascii_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# File name endings -> (Prism language, what the customer reads).
_LANGUAGES = {
    ".php": ("php", "PHP"),
    ".html": ("markup", "HTML"),
    ".htm": ("markup", "HTML"),
    ".xml": ("markup", "XML"),
    ".svg": ("markup", "SVG"),
    ".css": ("css", "CSS"),
    ".js": ("javascript", "JavaScript"),
    ".json": ("json", "JSON"),
    ".ini": ("ini", "INI"),
    ".htaccess": ("apacheconf", ".htaccess"),
    ".sh": ("bash", "shell script"),
    ".sql": ("sql", "SQL"),
    ".yml": ("yaml", "YAML"),
    ".yaml": ("yaml", "YAML"),
    ".py": ("python", "Python"),
}


def _language(path: str) -> tuple[str, str]:
    name = path.rsplit("/", 1)[-1].lower()
    for ending, found in _LANGUAGES.items():
        if name.endswith(ending):
            return found
    return "none", "plain text"


@login_required
def file_edit(request: AuthedHttpRequest, service_id: int) -> HttpResponse:
    _customer, service = _service(request, service_id)
    try:
        path = files.clean_path(request.GET.get("path", ""), allow_root=False)
    except files.FileError:
        raise Http404("No such file") from None
    form: forms.EditForm
    if request.method == "POST":
        form = forms.EditForm(request.POST)
        if form.is_valid():
            try:
                files.write_file(
                    service=service, path=path, data=form.cleaned_data["content"].encode()
                )
            except files.FileError as exc:
                form.add_error("content", str(exc))
            else:
                messages.success(request, f"Saved {path}.")
                return redirect(_files_url(service, files.parent(path)))
    else:
        try:
            raw = files.read_file(service=service, path=path, limit=files.MAX_EDIT)
        except files.FileError as exc:
            _file_error(request, exc)
            return redirect(_files_url(service, files.parent(path)))
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            messages.error(request, "This file is not text; download it instead.")
            return redirect(_files_url(service, files.parent(path)))
        form = forms.EditForm(initial={"content": text})
    language, language_label = _language(path)
    return render(
        request,
        "panel/file_edit.html",
        {
            "service": service,
            "path": path,
            "parent": files.parent(path),
            "form": form,
            "language": language,
            "language_label": language_label,
        },
    )


# --- account ----------------------------------------------------------------------------------


@login_required
@require_GET
def account_activity(request: AuthedHttpRequest) -> HttpResponse:
    customer = selectors.customer_or_404(user=request.user)
    page = Paginator(selectors.account_activity(customer=customer), 25).get_page(
        request.GET.get("page")
    )
    return render(request, "panel/activity.html", {"customer": customer, "page": page})


@require_POST
def impersonation_stop(request: HttpRequest) -> HttpResponse:
    """End a staff member's session as a customer and go back to that customer in the admin."""
    data = request.session.get("hw_impersonator") or {}
    staff = impersonation_end(request=request)
    if staff is None:
        return redirect("home")
    customer_id = data.get("customer")
    if customer_id:
        return redirect("admin:accounts_customer_change", customer_id)
    return redirect("admin:index")
