"""Storefront (pricing, plan selection, checkout) and the customer's billing pages."""

from __future__ import annotations

import json
import time
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import Customer, Membership
from accounts.selectors import customer_for_user
from billing import services, webhooks
from billing.errors import BillingError
from billing.gateways import stripe as stripe_gateway
from billing.models import (
    Addon,
    AddonPrice,
    BillingCycle,
    CreditNote,
    Invoice,
    Plan,
    Subscription,
)
from billing.pdf import credit_note_pdf, invoice_pdf
from billing.selectors import catalog_for_storefront, credit_balance, order_quote
from hosting.lib.http import AuthedHttpRequest
from provisioning.selectors import dedicated_ip_available

CART = "billing_cart"


def _currency(request: HttpRequest) -> str:
    customer = customer_for_user(user=request.user)
    return customer.currency if customer else settings.DEFAULT_CURRENCY


def pricing(request: HttpRequest) -> HttpResponse:
    cycle = request.GET.get("cycle", BillingCycle.MONTHLY)
    if cycle not in BillingCycle.values:
        cycle = BillingCycle.MONTHLY
    currency = _currency(request)
    products = catalog_for_storefront(currency=currency)
    for product in products:
        for plan in product.shown_plans:  # type: ignore[attr-defined]
            prices = {p.cycle: p for p in plan.shown_prices}
            plan.price = prices.get(cycle)
            plan.monthly_equivalent = (
                (prices[cycle].amount / 12).quantize(prices[cycle].amount)
                if cycle == BillingCycle.ANNUAL and cycle in prices
                else None
            )
    return render(
        request,
        "storefront/pricing.html",
        {"products": products, "cycle": cycle, "currency": currency, "cycles": BillingCycle},
    )


class OrderForm(forms.Form):
    domain = forms.CharField(
        label="Domain to host", max_length=253, help_text="The name your site will answer on."
    )
    cycle = forms.ChoiceField(
        label="Billing", choices=BillingCycle.choices, widget=forms.RadioSelect
    )
    addons = forms.ModelMultipleChoiceField(
        queryset=Addon.objects.filter(is_active=True),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Add-ons",
    )
    coupon = forms.CharField(label="Coupon code", max_length=40, required=False)

    def __init__(self, *args: Any, currency: str, plan: Plan | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prices: dict[int, dict[str, str]] = {}
        for row in AddonPrice.objects.filter(currency=currency):
            prices.setdefault(row.addon_id, {})[row.cycle] = f"{row.amount} {currency}"
        field = self.fields["addons"]
        offered = Addon.objects.filter(is_active=True, pk__in=prices)
        # A dedicated IP is offered only when one can be given (never charged for nothing).
        if (plan is not None and plan.dedicated_ip) or not dedicated_ip_available():
            offered = offered.exclude(kind=Addon.Kind.DEDICATED_IP)
        field.queryset = offered  # type: ignore[attr-defined]

        def label(addon: Addon) -> str:
            price = prices.get(addon.pk, {})
            parts = [
                f"{price['monthly']} a month" if "monthly" in price else "",
                f"{price['annual']} a year" if "annual" in price else "",
            ]
            shown = " or ".join(p for p in parts if p)
            return f"{addon.name} · {shown}" if shown else addon.name

        field.label_from_instance = label  # type: ignore[attr-defined]

    def clean_domain(self) -> str:
        try:
            return services.clean_domain(self.cleaned_data["domain"])
        except BillingError as exc:
            raise forms.ValidationError(exc.messages) from None


def order_start(request: HttpRequest, slug: str) -> HttpResponse:
    plan = get_object_or_404(Plan.objects.select_related("product"), slug=slug, is_active=True)
    cart = request.session.get(CART, {})
    initial = {"cycle": request.GET.get("cycle", BillingCycle.MONTHLY)}
    if cart.get("plan") == plan.slug:
        initial.update(cart)
    form = OrderForm(request.POST or None, initial=initial, currency=_currency(request), plan=plan)
    if request.method == "POST" and form.is_valid():
        request.session[CART] = {
            "plan": plan.slug,
            "cycle": form.cleaned_data["cycle"],
            "domain": form.cleaned_data["domain"],
            "addons": [a.pk for a in form.cleaned_data["addons"]],
            "coupon": form.cleaned_data["coupon"].strip().upper(),
        }
        return redirect("billing:checkout")
    prices = {p.cycle: p for p in plan.prices.filter(currency=_currency(request))}
    return render(
        request,
        "storefront/order.html",
        {"plan": plan, "form": form, "prices": prices, "currency": _currency(request)},
    )


def checkout(request: HttpRequest) -> HttpResponse:
    """Order summary with taxes; signing up or in first when the visitor is anonymous."""
    cart = request.session.get(CART)
    if not cart:
        messages.info(request, "Pick a plan first.")
        return redirect("billing:pricing")
    plan = get_object_or_404(Plan, slug=cart["plan"], is_active=True)
    if not request.user.is_authenticated:
        next_url = reverse("billing:checkout")
        return render(
            request,
            "storefront/checkout_account.html",
            {"plan": plan, "cart": cart, "next": next_url},
        )
    customer = customer_for_user(user=request.user)
    if customer is None:
        raise Http404("no customer account")
    addons = list(Addon.objects.filter(pk__in=cart.get("addons", []), is_active=True))
    try:
        quote = order_quote(
            customer=customer,
            plan=plan,
            cycle=cart["cycle"],
            addons=addons,
            coupon_code=cart.get("coupon", ""),
        )
    except BillingError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("billing:order", slug=plan.slug)
    if request.method == "POST":
        try:
            order = services.order_place(
                customer=customer,
                plan=plan,
                cycle=cart["cycle"],
                domain=cart["domain"],
                addons=addons,
                coupon_code=cart.get("coupon", ""),
                actor=request.user,
            )
        except BillingError as exc:
            for message in exc.messages:
                messages.error(request, message)
            return redirect("billing:checkout")
        del request.session[CART]
        invoice = Invoice.objects.get(order=order)
        return redirect("billing:invoice", pk=invoice.pk)
    return render(
        request,
        "storefront/checkout.html",
        {"plan": plan, "cart": cart, "quote": quote, "customer": customer, "addons": addons},
    )


def _customer_or_404(request: AuthedHttpRequest) -> Customer:
    customer = customer_for_user(user=request.user)
    if customer is None:
        raise Http404("no customer account")
    return customer


def _invoice_for(request: AuthedHttpRequest, pk: int) -> Invoice:
    """Members of the invoice's customer see it; everybody else gets a 404."""
    return get_object_or_404(
        Invoice.objects.exclude(state=Invoice.State.DRAFT),
        pk=pk,
        customer__memberships__user=request.user,
    )


@login_required
def invoice_list(request: AuthedHttpRequest) -> HttpResponse:
    customer = _customer_or_404(request)
    return render(
        request,
        "billing/invoice_list.html",
        {
            "customer": customer,
            "invoices": Invoice.objects.filter(customer=customer)
            .exclude(state=Invoice.State.DRAFT)
            .order_by("-issue_date", "-id"),
            "credit": credit_balance(customer=customer, currency=customer.currency),
            "subscriptions": Subscription.objects.filter(customer=customer)
            .select_related("plan", "service", "payment_method")
            .order_by("-created_at"),
            "plans": Plan.objects.filter(is_active=True),
            "is_owner": customer.memberships.filter(
                user=request.user, role=Membership.Role.OWNER
            ).exists(),
            "cards": customer.payment_methods.all(),
        },
    )


PAYMENT_PROCESSING_SECONDS = 15 * 60


@login_required
def invoice_detail(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_for(request, pk)
    returned = request.GET.get("paid") == "1"
    # Back from the card page, the payment is on its way (the processor's webhook confirms
    # it): the invoice reads "Payment processing" without Pay buttons, also on a later visit,
    # for PAYMENT_PROCESSING_SECONDS, so nobody pays twice while it arrives.
    key = f"hw_invoice_processing_{invoice.pk}"
    if returned and invoice.is_open:
        request.session[key] = time.time()
    elif not invoice.is_open:
        request.session.pop(key, None)
    since = request.session.get(key)
    processing = bool(
        invoice.is_open
        and (returned or (since and time.time() - float(since) < PAYMENT_PROCESSING_SECONDS))
    )
    # Once the payment is in, a new order's hosting is being set up; the customer goes on to
    # watch it.
    ordered = None
    if returned and invoice.order_id and not invoice.is_open:
        ordered = (
            Subscription.objects.filter(order_id=invoice.order_id).select_related("service").first()
        )
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "invoice": invoice,
            "lines": invoice.lines.all(),
            "payments": invoice.payments.all(),
            "credit_notes": invoice.credit_notes.all(),
            "returned": returned,
            "processing": processing,
            "ordered_service": ordered.service if ordered else None,
            # Poll until the payment is in and, for an order, its hosting account exists.
            "waiting": returned and (invoice.is_open or bool(invoice.order_id and not ordered)),
            "saved_card": invoice.customer.payment_methods.filter(is_default=True).first(),
        },
    )


@login_required
def invoice_download(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_for(request, pk)
    response = HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{invoice.number}.pdf"'
    return response


@login_required
def credit_note_download(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    note = get_object_or_404(CreditNote, pk=pk, customer__memberships__user=request.user)
    response = HttpResponse(credit_note_pdf(note=note), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{note.number}.pdf"'
    return response


@login_required
@require_POST
def invoice_pay(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_for(request, pk)
    back = request.build_absolute_uri(reverse("billing:invoice", args=[invoice.pk]))
    try:
        url = services.invoice_checkout_start(
            invoice=invoice, success_url=f"{back}?paid=1", cancel_url=back
        )
    except BillingError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("billing:invoice", pk=invoice.pk)
    return redirect(url)


@login_required
@require_POST
def invoice_pay_saved_card(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_for(request, pk)
    try:
        services.invoice_collect(invoice=invoice, gateway="stripe", actor=request.user)
    except BillingError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Thank you: your card was charged.")
    return redirect("billing:invoice", pk=invoice.pk)


def _owned_subscription(request: AuthedHttpRequest, pk: int) -> Subscription:
    return get_object_or_404(
        Subscription,
        pk=pk,
        customer__memberships__user=request.user,
        customer__memberships__role=Membership.Role.OWNER,
    )


@login_required
@require_POST
def subscription_cancel(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    sub = _owned_subscription(request, pk)
    try:
        services.subscription_cancel(
            subscription=sub, at_period_end=request.POST.get("when") != "now", actor=request.user
        )
    except BillingError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Your cancellation is noted.")
    return redirect("billing:invoices")


@login_required
@require_POST
def subscription_change(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    sub = _owned_subscription(request, pk)
    plan = get_object_or_404(Plan, pk=request.POST.get("plan"), is_active=True)
    try:
        invoice = services.subscription_change_plan(subscription=sub, plan=plan, actor=request.user)
    except BillingError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("billing:invoices")
    if invoice is not None and invoice.is_open:
        messages.info(request, f"Pay invoice {invoice.number} and the plan changes at once.")
        return redirect("billing:invoice", pk=invoice.pk)
    messages.success(request, f"Your service is moving to {plan.name}.")
    return redirect("billing:invoices")


@login_required
@require_POST
def card_setup(request: AuthedHttpRequest) -> HttpResponse:
    customer = _customer_or_404(request)
    back = request.build_absolute_uri(reverse("billing:invoices"))
    try:
        url = services.card_setup_start(customer=customer, success_url=back, cancel_url=back)
    except BillingError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("billing:invoices")
    return redirect(url)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's deliveries: signature checked (300 s tolerance), each event applied once."""
    try:
        event = stripe_gateway.construct_event(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except stripe_gateway.SignatureError as exc:
        webhooks.stripe_webhook_rejected(
            reason=str(exc), remote_addr=request.META.get("REMOTE_ADDR", "")
        )
        return HttpResponseBadRequest("signature rejected")
    try:
        stored = webhooks.stripe_event_apply(event=event)
    except BillingError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    body: dict[str, Any] = {"id": stored.event_id, "status": stored.status, "result": stored.result}
    return HttpResponse(json.dumps(body), content_type="application/json")
