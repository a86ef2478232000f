from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts.middleware import connect_signals
        from accounts.roles import sync_roles

        post_migrate.connect(sync_roles, dispatch_uid="accounts.sync_roles")
        connect_signals()
