from django.urls import path

from billing import views

app_name = "billing"
urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("order/<slug:slug>/", views.order_start, name="order"),
    path("checkout/", views.checkout, name="checkout"),
    path("billing/invoices/", views.invoice_list, name="invoices"),
    path("billing/invoices/<int:pk>/", views.invoice_detail, name="invoice"),
    path("billing/invoices/<int:pk>/pdf/", views.invoice_download, name="invoice_pdf"),
    path("billing/invoices/<int:pk>/pay/", views.invoice_pay, name="invoice_pay"),
    path(
        "billing/invoices/<int:pk>/pay-saved/",
        views.invoice_pay_saved_card,
        name="invoice_pay_saved",
    ),
    path("billing/subscriptions/<int:pk>/cancel/", views.subscription_cancel, name="cancel"),
    path("billing/subscriptions/<int:pk>/change/", views.subscription_change, name="change"),
    path("billing/credit-notes/<int:pk>/pdf/", views.credit_note_download, name="credit_note_pdf"),
    path("billing/card/", views.card_setup, name="card_setup"),
    path("billing/webhooks/stripe/", views.stripe_webhook, name="stripe_webhook"),
]
