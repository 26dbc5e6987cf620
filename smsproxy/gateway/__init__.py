"""The SMS provider boundary: `get_provider()` returns the configured provider.

Nothing outside this package imports the Vonage SDK. Callers import the interface, the typed
results and the errors from `smsproxy.gateway.base`. The sandbox provider lives in its own app,
`smsproxy.sandbox` (installed only with `SMS_PROVIDER=sandbox`); this is its one importer.

The gateway has no models; it stays an installed app for its migrations, which drop the tables
the sandbox once kept here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.apps import apps as app_registry
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .base import SmsProvider

__all__ = ["get_provider"]

# Settings the provider instance is built from: changing one (override_settings) rebuilds it.
PROVIDER_SETTINGS = frozenset(
    {
        "SMS_PROVIDER",
        "VONAGE_API_KEY",
        "VONAGE_API_SECRET",
        "VONAGE_REST_HOST",
        "VONAGE_API_HOST",
        "VONAGE_TIMEOUT",
        "PROXY_VOICE",
        "VONAGE_APPLICATION_ID",
    }
)


def get_provider() -> SmsProvider:
    """The provider chosen by `settings.SMS_PROVIDER`, built once per configuration."""
    return _build_provider()


@lru_cache(maxsize=1)
def _build_provider() -> SmsProvider:
    # Imported here: the sandbox needs its app installed (models), the Vonage module the SDK.
    if settings.SMS_PROVIDER == "vonage":
        from .vonage import VonageProvider

        return VonageProvider(
            api_key=settings.VONAGE_API_KEY,
            api_secret=settings.VONAGE_API_SECRET,
            rest_host=settings.VONAGE_REST_HOST,
            api_host=settings.VONAGE_API_HOST,
            timeout=settings.VONAGE_TIMEOUT,
            voice_application_id=settings.VONAGE_APPLICATION_ID if settings.PROXY_VOICE else "",
        )
    if settings.SMS_PROVIDER == "sandbox":
        if not app_registry.is_installed("smsproxy.sandbox"):
            raise ImproperlyConfigured(
                "SMS_PROVIDER=sandbox needs the smsproxy.sandbox app in INSTALLED_APPS."
            )
        from smsproxy.sandbox.provider import SANDBOX_APPLICATION_ID, SandboxProvider

        application_id = settings.VONAGE_APPLICATION_ID or SANDBOX_APPLICATION_ID
        return SandboxProvider(voice_application_id=application_id if settings.PROXY_VOICE else "")
    raise ImproperlyConfigured(
        f"SMS_PROVIDER must be 'vonage' or 'sandbox', not {settings.SMS_PROVIDER!r}."
    )


@receiver(setting_changed)
def _reset_provider(*, setting: str, **kwargs: Any) -> None:
    if setting in PROVIDER_SETTINGS:
        _build_provider.cache_clear()
