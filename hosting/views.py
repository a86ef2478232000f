from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from panel.selectors import customer_for_dashboard, dashboard


def home(request: HttpRequest) -> HttpResponse:
    """The storefront for visitors; the dashboard for signed-in customers."""
    if request.user.is_authenticated:
        customer = customer_for_dashboard(user=request.user)
        board = dashboard(customer=customer) if customer is not None else None
        return render(request, "dashboard.html", {"customer": customer, "board": board})
    return render(request, "home.html")
