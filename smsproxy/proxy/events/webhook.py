"""One signed POST to a marketplace endpoint (DESIGN.md §11), as Standard Webhooks specifies.

The body is signed with PROXY_EVENTS_SECRET by the `standardwebhooks` library itself
(HMAC-SHA256 over `id.timestamp.body`), so a receiver verifies it with any Standard Webhooks
library. Redirects are not followed: a request goes only to the configured URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from math import floor
from typing import Any

import requests
from django.conf import settings
from django.core.checks import CheckMessage, Error
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

USER_AGENT = "smsproxy"


def webhook_post(*, url: str, message_id: str, body: str, timeout: float) -> requests.Response:
    """POST `body` (JSON text) to `url`, signed; raises `requests.RequestException` on a
    timeout or a connection error, returns the response whatever its status."""
    now = datetime.now(tz=UTC)
    signature = Webhook(settings.PROXY_EVENTS_SECRET).sign(
        msg_id=message_id, timestamp=now, data=body
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(now.timestamp())),
        "webhook-signature": signature,
    }
    return requests.post(
        url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False
    )


def webhook_settings_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """System check: a marketplace URL needs a usable Standard Webhooks secret to sign with."""
    urls = [name for name in ("PROXY_EVENTS_URL", "PROXY_INTERCEPT_URL") if getattr(settings, name)]
    if not urls:
        return []
    secret = settings.PROXY_EVENTS_SECRET
    if not secret:
        return [
            Error(
                f"{' and '.join(urls)} set without PROXY_EVENTS_SECRET: nothing could be signed.",
                hint="Set PROXY_EVENTS_SECRET to the Standard Webhooks secret (whsec_...) the "
                "marketplace verifies with.",
                id="smsproxy.E010",
            )
        ]
    try:
        Webhook(secret)
    except (ValueError, TypeError, EmptyWebhookSecretError):
        return [
            Error(
                "PROXY_EVENTS_SECRET is not a Standard Webhooks secret.",
                hint="whsec_ followed by base64, as the marketplace's library generates it.",
                id="smsproxy.E011",
            )
        ]
    return []
