"""Settling rows a dead worker left in `sending` (policy in `deliver`'s docstring)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from smsproxy.proxy.events.record import event_message_status
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.parts import message_status_refresh
from smsproxy.proxy.outbox.record import fail, requeue

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted"


def stale_sending_after() -> timedelta:
    """How long after its claim a row still `sending` is taken to be a dead worker's."""
    return timedelta(seconds=settings.OUTBOX_STALE_SENDING_AFTER)


def outbox_recover_stale(*, now: datetime | None = None, limit: int = 500) -> list[Message]:
    """Settle rows left in `sending` by a dead worker."""
    now = now or timezone.now()
    stale = Q(status=Message.Status.SENDING) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - stale_sending_after())
    )
    ids = list(Message.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:limit])
    settled = []
    for message_id in ids:
        with transaction.atomic():
            message = Message.objects.select_for_update().filter(stale, pk=message_id).first()
            if message is None:
                continue
            if message.parts.filter(superseded=False).exists():
                message.status = Message.Status.SENT
                message.sent_at = message.claimed_at or now
                message.save(update_fields=["status", "sent_at", "updated_at"])
                event_message_status(message_id=message.pk)
                message_status_refresh(message=message)
                logger.warning(
                    "Message %s was stuck in sending with receipts: marked sent.", message.pk
                )
            elif message.error_code == INTERRUPTED or message.attempts >= message.max_attempts:
                fail(
                    message,
                    code=INTERRUPTED,
                    text="The worker sending this message stopped before recording the result, "
                    "again: it may or may not have been sent. Not retried automatically.",
                )
                logger.error("Message %s interrupted again while sending: failed.", message.pk)
            else:
                requeue(
                    message,
                    at=now,
                    code=INTERRUPTED,
                    text="The worker sending this message stopped before recording the result; "
                    "sent again (the recipient may get it twice).",
                )
                logger.warning("Message %s was stuck in sending: re-queued once.", message.pk)
            settled.append(message)
    return settled
