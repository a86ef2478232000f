"""Panel pages where a customer creates and revokes personal API tokens."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Customer
from accounts.selectors import customer_for_user
from api.models import ApiToken
from api.services import api_token_create, api_token_revoke
from hosting.lib.http import AuthedHttpRequest


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="So you recognise it later, e.g. “deploy script”."
    )
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)


def _customer(request: AuthedHttpRequest) -> Customer:
    customer = customer_for_user(user=request.user)
    if customer is None:
        raise Http404
    return customer


@login_required
def token_list(request: AuthedHttpRequest) -> HttpResponse:
    customer = _customer(request)
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        issued = api_token_create(
            customer=customer,
            user=request.user,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
        )
        new_token = issued.secret
        form = TokenForm()
    tokens = ApiToken.objects.filter(customer=customer).select_related("user")
    return render(
        request,
        "api/tokens.html",
        {"form": form, "tokens": tokens, "new_token": new_token},
    )


@login_required
@require_POST
def token_revoke(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, customer=_customer(request))
    api_token_revoke(token=token, actor=request.user)
    messages.success(request, f"The token “{token.name}” is revoked.")
    return redirect("api_tokens")
