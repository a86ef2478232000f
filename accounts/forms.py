from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest

from accounts.models import User, country_code
from accounts.services import customer_create_for_signup


class SignupForm(forms.Form):
    """Extra signup fields: who the customer is. allauth handles e-mail and password."""

    full_name = forms.CharField(label="Your name", max_length=150)
    company = forms.CharField(label="Company (optional)", max_length=200, required=False)
    country = forms.CharField(
        label="Country",
        max_length=2,
        min_length=2,
        initial="US",
        help_text="Two-letter code, e.g. US, DE, FR.",
    )

    field_order = ["full_name", "email", "password1", "password2", "company", "country"]

    def clean_country(self) -> str:
        value = self.cleaned_data["country"].strip().upper()
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
