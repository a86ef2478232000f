from django.urls import path

from api import views_panel

urlpatterns = [
    path("account/tokens/", views_panel.token_list, name="api_tokens"),
    path("account/tokens/<int:pk>/revoke", views_panel.token_revoke, name="api_token_revoke"),
]
