from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.routers import SimpleRouter

from api import views_customer, views_provisioning

app_name = "api"

router = SimpleRouter()
router.register("services", views_customer.ServiceViewSet, basename="service")
router.register("operations", views_customer.OperationViewSet, basename="operation")
router.register("invoices", views_customer.InvoiceViewSet, basename="invoice")
router.register("tickets", views_customer.TicketViewSet, basename="ticket")

provisioning = [
    path("accounts", views_provisioning.AccountCreateView.as_view(), name="provisioning-create"),
    path(
        "services/<int:pk>", views_provisioning.ServiceView.as_view(), name="provisioning-service"
    ),
    path(
        "services/<int:pk>/suspend",
        views_provisioning.SuspendView.as_view(),
        name="provisioning-suspend",
    ),
    path(
        "services/<int:pk>/unsuspend",
        views_provisioning.UnsuspendView.as_view(),
        name="provisioning-unsuspend",
    ),
    path(
        "services/<int:pk>/terminate",
        views_provisioning.TerminateView.as_view(),
        name="provisioning-terminate",
    ),
    path(
        "services/<int:pk>/change-plan",
        views_provisioning.ChangePlanView.as_view(),
        name="provisioning-change-plan",
    ),
    path(
        "operations/<int:pk>",
        views_provisioning.OperationView.as_view(),
        name="provisioning-operation",
    ),
]

urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/ping", views_provisioning.PingView.as_view(), name="ping"),
    path("v1/provisioning/", include(provisioning)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularRedocView.as_view(url_name="api:schema"), name="docs"),
]
