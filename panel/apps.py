from django.apps import AppConfig


class PanelConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "panel"
    verbose_name = "Customer panel"

    def ready(self) -> None:
        # The file manager's node helpers join every remote shell opened from now on.
        from panel import files  # noqa: F401
