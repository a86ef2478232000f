from django.urls import path

from panel import views

app_name = "panel"
urlpatterns = [
    path("services/<int:service_id>/", views.service_detail, name="service"),
    path(
        "services/<int:service_id>/operations/<int:operation_id>/progress/",
        views.operation_progress,
        name="operation_progress",
    ),
    path(
        "services/<int:service_id>/resources/<slug:action>/",
        views.resource_action,
        name="resource_action",
    ),
    path("services/<int:service_id>/plan/", views.plan_change, name="plan_change"),
    path("services/<int:service_id>/logs/<slug:kind>/", views.log_tail, name="log_tail"),
    path("services/<int:service_id>/files/", views.file_browser, name="files"),
    path("services/<int:service_id>/files/download/", views.file_download, name="file_download"),
    path("services/<int:service_id>/files/edit/", views.file_edit, name="file_edit"),
    path("services/<int:service_id>/files/<slug:action>/", views.file_action, name="file_action"),
    path("account/activity/", views.account_activity, name="activity"),
    path("impersonation/stop/", views.impersonation_stop, name="impersonation_stop"),
]
