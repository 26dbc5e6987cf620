"""System checks that `manage.py check --deploy` runs besides Django's own."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_webhook_signing(app_configs: Any, **kwargs: Any) -> list[Warning]:
    warnings = []
    # Whatever the provider: the webhooks are public, and without a secret anyone who finds
    # them can inject inbound SMS (so out-of-session replies) and delivery receipts.
    if not settings.VONAGE_SIGNATURE_SECRET:
        warnings.append(
            Warning(
                "Webhooks are not signed: anyone who learns the webhook URL can inject "
                "inbound SMS and delivery receipts.",
                hint="Enable signed webhooks on the Vonage account and set "
                "VONAGE_SIGNATURE_SECRET (and VONAGE_SIGNATURE_METHOD).",
                id="smsproxy.W001",
            )
        )
    if not settings.PUBLIC_BASE_URL.startswith("https://"):
        warnings.append(
            Warning(
                "PUBLIC_BASE_URL is not https: webhook payloads (phone numbers, texts) would "
                "travel in clear.",
                hint="Set PUBLIC_BASE_URL to the public https origin Vonage reaches.",
                id="smsproxy.W002",
            )
        )
    return warnings
