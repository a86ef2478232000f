from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Support"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from support.models import Attachment, delete_attachment_file

        post_delete.connect(
            delete_attachment_file, sender=Attachment, dispatch_uid="support.attachment_file"
        )
