from django.apps import AppConfig
from django.core import checks


class GatewayConfig(AppConfig):
    name = "smsproxy.gateway"
    label = "gateway"
    verbose_name = "SMS provider"

    def ready(self) -> None:
        from .checks import check_voice_application

        checks.register(check_voice_application)
