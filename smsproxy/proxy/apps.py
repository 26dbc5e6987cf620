from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "smsproxy.proxy"
    label = "proxy"
    verbose_name = "Private conversations"

    def ready(self) -> None:
        from django.core import checks

        from smsproxy.numbers.signals import numbers_retired
        from smsproxy.numbers.usage import live_use_lookup_register
        from smsproxy.proxy.events.webhook import webhook_settings_check
        from smsproxy.proxy.handlers import numbers_retired_handle
        from smsproxy.proxy.outbox.claim import claim_database_check
        from smsproxy.proxy.selectors import number_live_use_list

        checks.register(claim_database_check, checks.Tags.compatibility)
        checks.register(webhook_settings_check)

        # The numbers app releases numbers without knowing about conversations (it never
        # imports the proxy); what used them is settled here.
        numbers_retired.connect(numbers_retired_handle, dispatch_uid="proxy.numbers_retired")
        # Staff releasing numbers see which conversations the release would close.
        live_use_lookup_register(name="proxy.conversations", lookup=number_live_use_list)
