"""Delivery receipts: the status of each sent part, and of the outbound message they make up.

Vonage sends one receipt per part of a multi-part SMS; the message's status follows its parts
(`parts.message_status_refresh`).

The race with the send: Vonage may deliver a receipt (it answers within milliseconds) before
the worker has written the send's result — the message is still `sending` and the part's row
does not exist yet. The receipt then finds the message by its `client-ref` (always the message
id) and creates the part itself with the receipt's status; when the worker writes the send
result it reuses that row and recomputes the message's status from all its parts. Nothing is
lost whichever side commits first. A receipt found by `client-ref` alone must also name the
message's numbers (`to` our sender, `msisdn` its recipient): another application on the same
Vonage account may number its client-refs like ours, and its receipts must never touch ours.
A receipt that matches neither a part nor a message (another application on the same account,
or a message deleted since) is logged and ignored: it answers 200 so that Vonage does not retry
it for three days.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox.parts import PART_FINAL, message_status_refresh

logger = logging.getLogger(__name__)


def receipt_record(*, receipt: DeliveryReceipt) -> MessagePart | None:
    """Record a receipt on its part and update the message; None when it matches nothing.

    Every writer of parts (this and the send's result) locks the message row first, so the two
    never deadlock and never both create one part.
    """
    with transaction.atomic():
        message_id = (
            MessagePart.objects.filter(vonage_message_id=receipt.vonage_message_id)
            .values_list("message_id", flat=True)
            .first()
        )
        by_client_ref = message_id is None
        if by_client_ref and receipt.client_ref.isdigit():
            message_id = int(receipt.client_ref)
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, direction=Message.Direction.OUTBOUND)
            .first()
            if message_id is not None
            else None
        )
        if message is not None and by_client_ref and not _numbers_match(receipt, message):
            message = None
        if message is None:
            logger.warning(
                "Delivery receipt for unknown message %s (client-ref %r) ignored.",
                receipt.vonage_message_id,
                receipt.client_ref,
            )
            return None
        part = MessagePart.objects.filter(vonage_message_id=receipt.vonage_message_id).first()
        now = timezone.now()
        if part is None:
            # The receipt came before the send's result was written (see the module docstring).
            part = MessagePart.objects.create(
                message=message,
                vonage_message_id=receipt.vonage_message_id,
                status=receipt.status,
                error_code=receipt.error_code,
                price=receipt.price,
                network=receipt.network,
                receipt_at=now,
            )
        elif part.status in PART_FINAL and receipt.status not in PART_FINAL:
            logger.info(
                "Late %s receipt for part %s (already %s) ignored.",
                receipt.status,
                part.vonage_message_id,
                part.status,
            )
            return part
        else:
            part.status = receipt.status
            part.error_code = receipt.error_code
            if receipt.price is not None:
                part.price = receipt.price
            if receipt.network:
                part.network = receipt.network
            part.receipt_at = now
            part.save(update_fields=["status", "error_code", "price", "network", "receipt_at"])
        message_status_refresh(message=message)
    logger.info(
        "Receipt %s for message #%s part %s%s: message %s.",
        receipt.status,
        message.pk,
        receipt.vonage_message_id,
        f" (err-code {receipt.error_code})" if receipt.error_code else "",
        message.status,
    )
    return part


def _numbers_match(receipt: DeliveryReceipt, message: Message) -> bool:
    """Whether the numbers a receipt names (when it names them) are those of `message`."""
    return receipt.sender in ("", message.sender) and receipt.recipient in ("", message.recipient)
