"""A message's error code in words, as Vonage documents it (the gateway's tables)."""

from __future__ import annotations

from smsproxy.gateway.error_codes import sms_error_description
from smsproxy.proxy.models import Message, MessagePart

_FAILED_PARTS = frozenset(
    {MessagePart.Status.FAILED, MessagePart.Status.REJECTED, MessagePart.Status.EXPIRED}
)


def message_error_description(message: Message) -> str:
    """What the message's error code means, or "" when Vonage does not document it.

    A message failed by a delivery receipt carries that receipt's `err-code` (the failed part
    of its latest send has the same code); any other code is the SMS API's status of a send
    it refused. Reads `message.parts` (prefetch them for a list).
    """
    code = message.error_code
    if not code or message.direction != Message.Direction.OUTBOUND:
        return ""
    from_receipt = any(
        not part.superseded and part.status in _FAILED_PARTS and part.error_code == code
        for part in message.parts.all()
    )
    return sms_error_description(code=code, receipt=from_receipt)


def part_error_description(part: MessagePart) -> str:
    """What a part's delivery receipt `err-code` means."""
    return sms_error_description(code=part.error_code, receipt=True) if part.error_code else ""
