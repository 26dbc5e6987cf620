"""Reading the parameters of Vonage's webhooks: shared by inbound SMS and delivery receipts."""

from __future__ import annotations

import re

from smsproxy.common.errors import ApplicationError

_E164_DIGITS_RE = re.compile(r"[1-9][0-9]{6,14}")


class WebhookIgnored(Exception):
    """A well-formed webhook we deliberately do not act on (an unknown receipt status, ...).

    The view answers it 200 and logs a warning: any other answer makes Vonage retry the same
    request for a day or more, and no retry would change our answer.
    """


def e164_from_vonage(value: str) -> str | None:
    """Vonage's "447700900123" (or "+447700900123") as "+447700900123"; None if not a number."""
    digits = value.strip().removeprefix("+")
    return f"+{digits}" if _E164_DIGITS_RE.fullmatch(digits) else None


def malformed(detail: str, field: str, problem: str) -> ApplicationError:
    """The error for a webhook parameter that is missing or unusable (answered 400)."""
    return ApplicationError(detail, code="malformed", fields={field: [problem]})
