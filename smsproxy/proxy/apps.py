from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "smsproxy.proxy"
    label = "proxy"
    verbose_name = "Private conversations"

    def ready(self) -> None:
        from django.core import checks

        from smsproxy.proxy.outbox.claim import claim_database_check

        checks.register(claim_database_check, checks.Tags.compatibility)
