"""System messages: the marketplace's own text to one participant (DESIGN.md §7).

Sent from the participant's proxy number, so it arrives in the thread they already have, and
logged in the conversation with purpose `system`. Like a forward it goes through the outbox
(rate-limited, retried) and is redacted when PROXY_REDACT_NUMBERS is on: the marketplace
should not hand out a real number by mistake either.
"""

from __future__ import annotations

import logging
from datetime import datetime
from http import HTTPStatus

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_region
from smsproxy.common.redaction import text_redact_numbers
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.outbox.queue import message_queue_outbound
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.lifetime import conversation_expiry_push

logger = logging.getLogger(__name__)


def system_message_send(
    *, conversation: Conversation, to: str, text: str, now: datetime | None = None
) -> Message:
    """Queue `text` to the participant whose real number is `to` (E.164), from their proxy number.

    400 `validation_error` for an empty or too long text, 400 `not_a_participant`, 409
    `conversation_closed` when the conversation is closed or expired. With
    PROXY_TTL_FROM=last_message the expiry moves forward.
    """
    if not text.strip():
        raise ApplicationError(
            "The text is empty.", code="validation_error", fields={"text": ["Must not be empty."]}
        )
    if len(text) > settings.PROXY_MAX_TEXT_LENGTH:
        raise ApplicationError(
            f"The text has {len(text)} characters; at most {settings.PROXY_MAX_TEXT_LENGTH} "
            "are sent.",
            code="validation_error",
            fields={"text": [f"At most {settings.PROXY_MAX_TEXT_LENGTH} characters."]},
        )
    with transaction.atomic():
        now = now or timezone.now()
        # Locked, so that a close committing meanwhile either comes first (and this is 409) or
        # waits until the message is queued in a conversation that was live.
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if not conversation_is_live(conversation=locked, now=now):
            raise ApplicationError(
                "This conversation is closed or expired; reopen it first.",
                code="conversation_closed",
                status=HTTPStatus.CONFLICT,
            )
        participant = (
            Participant.objects.filter(conversation=locked, real_number=to, active=True)
            .select_related("proxy_number")
            .first()
        )
        if participant is None:
            raise ApplicationError(
                f"{to} is not a participant of this conversation.",
                code="not_a_participant",
                fields={"to": ["Not the real number of a participant of this conversation."]},
            )
        if settings.PROXY_REDACT_NUMBERS:
            text = text_redact_numbers(text=text, region=participant.country or phone_region(to))
        message = message_queue_outbound(
            sender=participant.proxy_number.msisdn,
            recipient=participant.real_number,
            text=text,
            purpose=Message.Purpose.SYSTEM,
            conversation=locked,
        )
        conversation_expiry_push(conversation=locked, now=now)
    logger.info("Queued system message #%s in conversation %s", message.pk, locked.public_id)
    return message
