from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Celery only autodiscovers ``tasks`` modules; the account email task
        # lives with its service and must be registered in every worker.
        from apps.accounts.services import emails  # noqa: F401
