from django.urls import path

from accounts import views

urlpatterns = [
    path("account/", views.settings_view, name="account_settings"),
]
