from django.urls import path

from support import views

app_name = "support"
urlpatterns = [
    path("support/", views.ticket_list, name="tickets"),
    path("support/new/", views.ticket_new, name="ticket_new"),
    path("support/<int:ticket_id>/", views.ticket_detail, name="ticket"),
    path("support/<int:ticket_id>/resolve/", views.ticket_resolve, name="ticket_resolve"),
    path(
        "support/<int:ticket_id>/attachments/<int:attachment_id>/",
        views.attachment_download,
        name="attachment",
    ),
]
