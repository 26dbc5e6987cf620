from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "smsproxy.common"
    label = "common"
    verbose_name = "smsproxy"

    def ready(self) -> None:
        from smsproxy.common import checks  # noqa: F401  (registers the system checks)
