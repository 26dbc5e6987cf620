"""Retention: message texts are personal data, kept only as long as the operator decides.

Purging blanks the texts of old messages (and of the concatenated parts they were joined from)
and keeps every row, so counts, statuses, prices and the audit trail of who wrote to whom and
when stay intact. Messages still on their way out (queued, sending) are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet

from smsproxy.proxy.models import InboundPart, Message

PURGE_BATCH_SIZE = 1000
_IN_FLIGHT = (Message.Status.QUEUED, Message.Status.SENDING)


def messages_purgeable(*, older_than: datetime) -> QuerySet[Message]:
    """Messages created before `older_than` whose text is still stored and no longer needed."""
    return (
        Message.objects.filter(created_at__lt=older_than)
        .exclude(text="")
        .exclude(Q(direction=Message.Direction.OUTBOUND) & Q(status__in=_IN_FLIGHT))
    )


def messages_purge_texts(
    *,
    older_than: datetime,
    batch_size: int = PURGE_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Blank the texts of `messages_purgeable` in batches; returns how many messages."""
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                messages_purgeable(older_than=older_than)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            purged = Message.objects.filter(pk__in=ids).update(text="")
            InboundPart.objects.filter(message_id__in=ids).update(text="")
        total += purged
        if on_batch is not None:
            on_batch(purged)
    # Parts of a group that never completed are joined (and so become a message) by the sweep
    # within minutes; any older still unjoined are orphans of a deleted message.
    InboundPart.objects.filter(received_at__lt=older_than, message__isnull=True).exclude(
        text=""
    ).update(text="")
    return total
