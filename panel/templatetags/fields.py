"""``{% load fields %}``: a form field with its label, help and errors (``panel/_field.html``).

The service page shows six empty forms on every visit, and rendering their widgets was a third
of the page's time. An unbound form without initial data of its own renders the same HTML
every time (the panel's forms take nothing from the request), so that HTML is made once per
process; a bound form (errors, typed values) is always rendered afresh.
"""

from __future__ import annotations

from django import template
from django.forms import BoundField
from django.template.loader import get_template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_unbound: dict[tuple[object, ...], SafeString] = {}


@register.simple_tag
def field(bound: BoundField, template_name: str = "panel/_field.html") -> SafeString:
    """``{% field form.name %}``: what including ``panel/_field.html`` with the field gives."""
    form = bound.form
    key = None
    if not form.is_bound and not form.initial:
        key = (type(form), form.prefix, form.auto_id, bound.name, template_name)
        found = _unbound.get(key)
        if found is not None:
            return found
    html = mark_safe(get_template(template_name).render({"field": bound}))  # noqa: S308
    if key is not None:
        _unbound[key] = html
    return html
