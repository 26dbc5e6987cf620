from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "smsproxy.proxy"
    label = "proxy"
    verbose_name = "Private conversations"
