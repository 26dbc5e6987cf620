"""The admin's dashboard and SANDBOX banner, as tags the overridden admin templates call."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.utils import timezone

from smsproxy.proxy.dashboard import (
    live_conversations_count,
    messages_per_hour,
    month_spend,
    outbox_figures_get,
    pool_headroom_get,
)

register = template.Library()

# Stacking order of the chart's segments, bottom up; statuses not listed follow in name order.
STATUS_ORDER = ("delivered", "sent", "sending", "queued", "received", "unrouted", "failed")


def _status_rank(status: str) -> tuple[int, str]:
    return (STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER), status)


@register.inclusion_tag("proxy/dashboard.html")
def sms_dashboard() -> dict[str, Any]:
    now = timezone.now()
    bars = messages_per_hour(now=now)
    tallest = max((bar.total for bar in bars), default=0)
    statuses = sorted({status for bar in bars for status in bar.counts}, key=_status_rank)
    chart = [
        {
            "hour": bar.hour,
            "total": bar.total,
            # Percent of the tallest bar, so the busiest hour fills the chart's height.
            "segments": [
                {
                    "status": status,
                    "count": bar.counts[status],
                    "percent": 100 * bar.counts[status] / tallest,
                }
                for status in statuses
                if bar.counts.get(status)
            ],
        }
        for bar in bars
    ]
    outbox = outbox_figures_get(now=now)
    return {
        "live_conversations": live_conversations_count(),
        "outbox": outbox,
        "oldest_queued_age": outbox.oldest_queued_age(now=now),
        "pool": pool_headroom_get(),
        "spend": month_spend(now=now),
        "month": now,
        "chart": chart,
        "chart_total": sum(bar.total for bar in bars),
        "statuses": statuses,
    }


@register.simple_tag
def sandbox_mode() -> bool:
    """Whether SMS go to the sandbox provider (nothing reaches a phone)."""
    return bool(settings.SMS_PROVIDER == "sandbox")
