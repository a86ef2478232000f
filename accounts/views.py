from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
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


@login_required
def settings_view(request: AuthedHttpRequest) -> HttpResponse:
    customer = customer_for_user(user=request.user)
    form = CustomerProfileForm(request.POST or None, instance=customer)
    if customer is not None and request.method == "POST" and form.is_valid():
        customer_update_profile(
            customer=customer,
            actor=request.user,
            data=form.cleaned_data,
        )
        messages.success(request, "Your details are saved.")
        return redirect("account_settings")
    return render(request, "accounts/settings.html", {"form": form, "customer": customer})
