from __future__ import annotations

from typing import Any

import pycountry
from django import forms
from django.conf import settings
from django.http import HttpRequest

from accounts.models import User, country_code
from accounts.services import customer_create_for_signup


def country_choices() -> list[tuple[str, str]]:
    """Every ISO 3166 country by its name, for a select (the code is what is stored)."""
    return sorted(
        ((c.alpha_2, getattr(c, "common_name", None) or c.name) for c in pycountry.countries),
        key=lambda pair: pair[1],
    )


class SignupForm(forms.Form):
    """Extra signup fields: who the customer is. allauth handles e-mail and password."""

    full_name = forms.CharField(label="Your name", max_length=150)
    company = forms.CharField(label="Company (optional)", max_length=200, required=False)
    country = forms.ChoiceField(
        label="Country",
        choices=country_choices,
        help_text="Where you or your company are based: it decides the tax on your invoices.",
    )

    field_order = ["full_name", "email", "password1", "password2", "company", "country"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The seller's own country is the likeliest one (and the one without tax surprises).
        self.fields["country"].initial = settings.BILLING_SELLER_COUNTRY

    def clean_country(self) -> str:
        value = str(self.cleaned_data["country"]).strip().upper()
        country_code(value)
        return value

    def signup(self, request: HttpRequest, user: User) -> None:
        data: dict[str, Any] = self.cleaned_data
        user.full_name = data["full_name"].strip()
        user.save(update_fields=["full_name"])
        customer_create_for_signup(
            user=user,
            name=user.full_name,
            company=data.get("company", "").strip(),
            country=data["country"],
            currency=settings.DEFAULT_CURRENCY,
        )
