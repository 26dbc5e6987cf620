from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "smsproxy.gateway"
    label = "gateway"
    verbose_name = "SMS provider"
