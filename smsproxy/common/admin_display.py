"""Compact, coloured cells for admin change lists (status badges, flags, truncated texts).

Styles are inline so that a list reads the same with or without collected static files.
"""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

# Tones by meaning, shared by every status: what went well, what is under way, what needs a
# look, what failed, and what is over.
_TONES = {
    "good": ("#e6f4ea", "#1e6b34"),
    "busy": ("#e8f0fe", "#1a4fa0"),
    "warn": ("#fef3e0", "#8a4b00"),
    "bad": ("#fce8e6", "#a3211a"),
    "done": ("#eeeeee", "#5f6368"),
}

STATUS_TONES = {
    # messages
    "delivered": "good",
    "received": "good",
    "sent": "busy",
    "queued": "busy",
    "sending": "busy",
    "started": "busy",
    "ringing": "busy",
    "unrouted": "warn",
    "expired": "warn",
    "failed": "bad",
    "rejected": "bad",
    # conversations, numbers and provisioning jobs
    "active": "good",
    "closed": "done",
    "released": "done",
    "succeeded": "good",
    "pending": "busy",
    "running": "busy",
    "partial": "warn",
    "reserved": "warn",
}

_BADGE = (
    '<span class="status-badge status-{}" title="{}" style="display:inline-block;'
    "padding:1px 7px;border-radius:9px;font-size:11px;font-weight:600;white-space:nowrap;"
    'background:{};color:{}">{}</span>'
)


def status_badge(status: str, label: str, *, title: str = "") -> SafeString:
    """`label` on a pill coloured by what `status` means (grey when unknown)."""
    background, colour = _TONES[STATUS_TONES.get(status, "done")]
    return format_html(_BADGE, status, title or label, background, colour, label)


def truncated(text: str, limit: int) -> SafeString:
    """`text` cut to `limit` characters, the whole of it in the tooltip."""
    if len(text) <= limit:
        return format_html("{}", text)
    return format_html('<span title="{}">{}…</span>', text, text[: limit - 1])


def muted(text: str) -> SafeString:
    """Greyed text, for rows that are over (a released number)."""
    return format_html('<span style="color:#9aa0a6">{}</span>', text)
