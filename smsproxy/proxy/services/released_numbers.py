"""Settling what used proxy numbers the pool has released: their conversations and queued SMS.

The numbers app releases numbers (staff, or a sync finding the account no longer rents them)
in transactions that lock only the number rows, and tells the proxy afterwards by the
`numbers_retired` signal (smsproxy.proxy.handlers). A process can die between that commit and
the handler, so the periodic sweep runs the same settlement for every released number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import OperationalError
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services.conversations import conversation_close

logger = logging.getLogger(__name__)


def released_numbers_settle(*, numbers: Sequence[VirtualNumber] | None = None) -> int:
    """Close (reason "staff") every live conversation on a released number; fail the SMS
    queued to go out from one (error code "sender_released"). Returns how many were closed.

    `numbers` limits it to those numbers (the signal handler); by default every released
    number is looked at (the sweep's crash recovery). Numbers still active are left alone:
    a sync may have brought one back meanwhile.
    """
    released = VirtualNumber.objects.filter(status=VirtualNumber.Status.RELEASED)
    if numbers is not None:
        released = released.filter(pk__in=[number.pk for number in numbers])
    conversations = Conversation.objects.filter(
        status=Conversation.Status.ACTIVE,
        pk__in=Participant.objects.filter(active=True, proxy_number__in=released).values(
            "conversation_id"
        ),
    ).order_by("pk")
    closed = 0
    for conversation in conversations:
        # Each close is its own transaction, locking the conversation and then its numbers:
        # the order every close and reassignment uses, so none of them deadlock.
        try:
            conversation_close(conversation=conversation, reason=Conversation.CloseReason.STAFF)
        except OperationalError as exc:
            # The sweep runs this again within 30 seconds.
            logger.warning(
                "Could not close conversation %s on a released number: %s",
                conversation.public_id,
                exc,
            )
            continue
        closed += 1
    failed = _queued_messages_fail(released=released)
    if closed or failed:
        logger.info(
            "Released numbers: closed %s live conversation(s), failed %s queued SMS",
            closed,
            failed,
        )
    return closed


def _queued_messages_fail(*, released: QuerySet[VirtualNumber]) -> int:
    """Fail the queued outbound SMS whose sender is a released number; returns how many.

    A number the account no longer rents must not send them (and may be someone else's by the
    time they would go out). Delivery refuses such a sender too (`sender_not_proxy`); this
    records the reason that explains it.
    """
    return Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.QUEUED,
        sender__in=released.values("msisdn"),
    ).update(
        status=Message.Status.FAILED,
        error_code="sender_released",
        error_text=Concat(
            Value("Not sent: the proxy number "),
            F("sender"),
            Value(" was released before it went out."),
        ),
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
