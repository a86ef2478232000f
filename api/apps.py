from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "API"

    def ready(self) -> None:
        from api import schema, webhooks  # noqa: F401  (schema registers OpenAPI extensions)

        webhooks.connect()
