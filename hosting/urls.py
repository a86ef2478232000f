from django.contrib import admin
from django.urls import include, path

from accounts.admin_site import brand_admin_site
from hosting import health, metrics, views

brand_admin_site(admin.site)

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/", include("api.urls")),
    path("", include("api.urls_panel")),
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
    path("", include("provisioning.urls")),
    path("", include("support.urls")),
    path("", include("panel.urls")),
]
