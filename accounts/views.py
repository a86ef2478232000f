from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render

from accounts.models import Customer
from accounts.selectors import customer_for_user
from accounts.services import customer_update_profile
from hosting.lib.http import AuthedHttpRequest


class CustomerProfileForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = [
            "name",
            "company",
            "address_line1",
            "address_line2",
            "city",
            "postal_code",
            "country",
            "tax_id",
        ]

    def __init__(self, *args: Any, country_locked: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tax_id"].label = "VAT id"
        self.fields["tax_id"].help_text = (
            "EU businesses: checked with VIES before it is saved; reverse charge applies once "
            "it is confirmed."
        )
        if country_locked:
            field = self.fields["country"]
            field.disabled = True
            field.help_text = (
                "Your country is on your invoices and decides their tax: write to support to "
                "change it."
            )


@login_required
def settings_view(request: AuthedHttpRequest) -> HttpResponse:
    """Billing details. Country and VAT id change only through ``customer_tax_identity_change``
    (format, check digits and VIES; the country is fixed once invoices exist)."""
    from billing.errors import BillingError
    from billing.vat import customer_tax_identity_change, has_invoices

    customer = customer_for_user(user=request.user)
    locked = customer is not None and has_invoices(customer)
    form = CustomerProfileForm(request.POST or None, instance=customer, country_locked=locked)
    if customer is not None and request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        country, tax_id = data.pop("country"), data.pop("tax_id")
        try:
            check = customer_tax_identity_change(
                customer=Customer.objects.get(pk=customer.pk),
                country=country,
                tax_id=tax_id,
                actor=request.user,
            )
        except (BillingError, ValidationError) as exc:
            form.add_error("tax_id", "; ".join(getattr(exc, "messages", None) or [str(exc)]))
            return render(request, "accounts/settings.html", {"form": form, "customer": customer})
        customer = Customer.objects.get(pk=customer.pk)
        customer_update_profile(customer=customer, actor=request.user, data=data)
        messages.success(request, "Your details are saved.")
        if check is not None and check.is_valid:
            messages.success(request, f"VIES confirmed your VAT id {check.tax_id}.")
        elif check is not None:
            messages.warning(
                request,
                f"VIES could not confirm {check.tax_id} now ({check.message}); VAT is charged "
                "until it does. It is checked again daily.",
            )
        return redirect("account_settings")
    return render(request, "accounts/settings.html", {"form": form, "customer": customer})
