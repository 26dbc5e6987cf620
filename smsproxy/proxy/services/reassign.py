"""Staff moving a participant to another proxy number (the admin's Reassign).

The same uniqueness rule as assignment (rule 3), and the lock order of `conversations`: the
conversation's row before any number's row.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.selectors import (
    assignable_features_q,
    conversation_is_live,
    participant_live_list,
)
from smsproxy.proxy.services.assignment import (
    expired_routes_close,
    number_loads_adjust,
    number_status_locked,
    number_uses_record,
)
from smsproxy.proxy.services.conversations import intro_queue

logger = logging.getLogger(__name__)


def participant_reassign_validate(
    *, participant: Participant, proxy_number: VirtualNumber, now: datetime | None = None
) -> None:
    """Raise ApplicationError when `proxy_number` may not be given to this participant."""
    now = now or timezone.now()
    if not conversation_is_live(conversation=participant.conversation, now=now):
        raise ApplicationError(
            "This conversation is closed or expired; its numbers cannot be changed.",
            code="conversation_closed",
        )
    if proxy_number.status != VirtualNumber.Status.ACTIVE:
        raise ApplicationError(
            f"{proxy_number.msisdn} has been released and cannot be assigned.",
            code="number_not_active",
        )
    usable = VirtualNumber.objects.filter(pk=proxy_number.pk).filter(assignable_features_q())
    if not usable.exists():
        needed = "SMS and calls (PROXY_VOICE is on)" if settings.PROXY_VOICE else "SMS"
        raise ApplicationError(
            f"{proxy_number.msisdn} cannot carry {needed}.", code="number_not_sms_capable"
        )
    conflict = (
        participant_live_list(now=now)
        .filter(real_number=participant.real_number, proxy_number=proxy_number)
        .exclude(pk=participant.pk)
        .select_related("conversation")
        .first()
    )
    if conflict is not None:
        raise ApplicationError(
            f"{participant.real_number} already uses {proxy_number.msisdn} in live conversation "
            f"{conflict.conversation}: one real number can use a proxy number in only one live "
            "conversation, or its messages could not be routed.",
            code="proxy_number_in_use",
        )


def participant_reassign(
    *,
    participant: Participant,
    proxy_number: VirtualNumber,
    now: datetime | None = None,
    actor: AbstractBaseUser | None = None,
) -> Participant:
    """Move a participant to another proxy number under the same uniqueness rule as assignment.

    The participant is told by SMS from the new number, which is now the one they text. Done
    by staff (`actor`): written to the conversation's admin history in the same transaction.
    """
    if participant.proxy_number_id == proxy_number.pk:
        return participant
    now = now or timezone.now()
    with transaction.atomic():
        # The conversation first (the module's lock order): a close running at the same time
        # either finishes before (and the reassignment is refused) or waits for this one.
        conversation = Conversation.objects.select_for_update().get(pk=participant.conversation_id)
        participant = (
            Participant.objects.select_for_update()
            .select_related("proxy_number")
            .get(pk=participant.pk)
        )
        participant.conversation = conversation
        participant_reassign_validate(participant=participant, proxy_number=proxy_number, now=now)
        # Other conversations before the number, too.
        expired_routes_close(
            real_number=participant.real_number, proxy_number=proxy_number, now=now
        )
        # `proxy_number` was read before this transaction (the admin form): a release may have
        # committed since. The lock makes a release running now wait until this commits.
        if number_status_locked(number_id=proxy_number.pk) != VirtualNumber.Status.ACTIVE:
            raise ApplicationError(
                f"{proxy_number.msisdn} has just been released and cannot be assigned.",
                code="number_not_active",
            )
        previous = participant.proxy_number
        participant.proxy_number = proxy_number
        try:
            with transaction.atomic():
                participant.save(update_fields=["proxy_number"])
        except IntegrityError as exc:
            raise ApplicationError(
                f"{participant.real_number} was given {proxy_number.msisdn} in another live "
                "conversation just now; choose another number.",
                code="proxy_number_in_use",
            ) from exc
        # Both numbers count as used by this person from now: a late reply from the previous
        # partner's thread may still come from `previous`.
        number_uses_record(
            uses=[
                (participant.real_number, previous.pk, now),
                (participant.real_number, proxy_number.pk, now),
            ]
        )
        if participant.active:
            number_loads_adjust(changes=Counter({previous.pk: -1, proxy_number.pk: 1}))
        other = (
            Participant.objects.filter(conversation=participant.conversation)
            .exclude(pk=participant.pk)
            .first()
        )
        intro_queue(participant=participant, other=other)
        if actor is not None:
            audit_change(
                actor=actor,
                obj=conversation,
                change=f"Reassigned {participant.name or f'participant #{participant.pk}'}: "
                f"proxy number {previous.msisdn} → {proxy_number.msisdn}.",
            )
    logger.info(
        "Moved a participant of conversation %s from %s to %s",
        participant.conversation.public_id,
        previous.msisdn,
        proxy_number.msisdn,
    )
    return participant
