from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Keel core"

    def ready(self) -> None:
        from apps.core import observability

        observability.configure_integrations()
