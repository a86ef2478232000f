"""``{% load checkout %}``: the order being checked out, on the sign-up and sign-in pages."""

from __future__ import annotations

from typing import Any

from django import template

from billing.models import Plan

register = template.Library()

CART = "billing_cart"  # the session key billing.views keeps the order under


@register.simple_tag(takes_context=True)
def checkout_order(context: dict[str, Any]) -> dict[str, Any] | None:
    """The plan, domain and cycle of the order in the session, or None when there is none."""
    request = context.get("request")
    if request is None or not hasattr(request, "session"):
        return None
    cart = request.session.get(CART) or {}
    if not cart.get("plan"):
        return None
    plan = Plan.objects.filter(slug=cart["plan"], is_active=True).first()
    if plan is None:
        return None
    return {"plan": plan, "domain": cart.get("domain", ""), "cycle": cart.get("cycle", "")}
