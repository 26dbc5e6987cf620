"""Masked voice calls (DESIGN.md §12): route a call like an SMS, record it from its events.

Answering: a call from real number A to proxy number P routes exactly as an SMS would (rule 2:
the live participant (A, P)), and is connected to the other participant's real number showing
the other participant's proxy number — the number that participant texts and hears from, never
A's. Answering reads and writes nothing else: the caller is waiting.

Recording: a call is one Message row with direction `call` in its conversation, so that the
API's messages list and the admin show calls among the texts with no endpoint of their own.
The row is keyed on Vonage's `conversation_uuid` (in the unique `vonage_message_id`), which
both legs of the call share: the first event of either leg creates it — the unique constraint
decides between two concurrent first events, as it does for a redelivered SMS — and each event
then moves it forward. Vonage may repeat or reorder events, so a status only ever advances
(started → ringing → answered → one final status) and the first final status stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from smsproxy.common.privacy import mask_number
from smsproxy.gateway.voice import TERMINAL_STATUSES, CallAnswer, CallEvent, CallLeg, CallStatus
from smsproxy.proxy.events.record import EventType, event_message
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services.inbound import participant_route_get

logger = logging.getLogger(__name__)

# What an out-of-session caller hears before the call ends.
CALL_ENDED_TEXT = "This conversation has ended."

# How far along a call is: a status is recorded only if it ranks above the current one.
_RANK = {
    Message.Status.STARTED: 1,
    Message.Status.RINGING: 2,
    Message.Status.ANSWERED: 3,
    **{Message.Status(status.value): 4 for status in TERMINAL_STATUSES},
}
_FINAL_RANK = 4


@dataclass(frozen=True)
class CallConnect:
    """Where a routed call goes: the other participant's real number, shown `caller_id`."""

    callee: str
    caller_id: str  # the callee's own proxy number: one of ours, never the caller's number
    conversation: Conversation


def call_route(*, answer: CallAnswer) -> CallConnect | None:
    """The other participant of the live conversation the caller reaches through the number
    called, or None (no live route, a withheld caller id, voice switched off)."""
    if not settings.PROXY_VOICE or answer.caller is None:
        return None
    route = participant_route_get(sender=answer.caller, proxy_number=answer.called)
    if route is None:
        return None
    other = _other_participant(route)
    if other is None:
        logger.error("Conversation %s has no second participant.", route.conversation_id)
        return None
    return CallConnect(
        callee=other.real_number,
        caller_id=other.proxy_number.msisdn,
        conversation=route.conversation,
    )


def _other_participant(participant: Participant) -> Participant | None:
    return (
        Participant.objects.filter(conversation_id=participant.conversation_id)
        .exclude(pk=participant.pk)
        .select_related("proxy_number")
        .first()
    )


def call_event_record(*, event: CallEvent) -> Message | None:
    """Record one event of a call's leg; None when the uuid belongs to a message, not a call."""
    with transaction.atomic():
        call = _call_locked(event.conversation_uuid)
        if call is None:
            try:
                with transaction.atomic():
                    call = _call_create(event)
            except IntegrityError:
                # A concurrent first event of the same call inserted it a moment ago.
                call = _call_locked(event.conversation_uuid)
        if call is None:
            logger.warning(
                "Call event %s: the id belongs to a message, not a call; ignored.",
                event.conversation_uuid,
            )
            return None
        _call_apply(call, event)
    return call


def _call_locked(conversation_uuid: str) -> Message | None:
    return (
        Message.objects.select_for_update()
        .filter(vonage_message_id=conversation_uuid, direction=Message.Direction.CALL)
        .first()
    )


def _call_create(event: CallEvent) -> Message:
    """The call's row, from whichever leg's event comes first; its conversation is the one the
    caller's (A, P) pair routes to — from the callee's leg, the callee is the live participant
    (callee's real number, callee's proxy number), whose partner is the caller."""
    sender, recipient = event.sender, event.recipient
    if event.leg is CallLeg.CALLER:
        route = participant_route_get(sender=sender, proxy_number=recipient)
    else:
        callee = participant_route_get(sender=event.recipient, proxy_number=event.sender)
        caller = _other_participant(callee) if callee is not None else None
        route = callee
        if caller is not None:
            sender, recipient = caller.real_number, caller.proxy_number.msisdn
    call = Message.objects.create(
        direction=Message.Direction.CALL,
        status=Message.Status.STARTED,
        conversation=route.conversation if route is not None else None,
        sender=sender,
        recipient=recipient,
        vonage_message_id=event.conversation_uuid,
    )
    logger.info(
        "Call %s from %s to %s: %s.",
        event.conversation_uuid,
        mask_number(sender),
        recipient,
        f"conversation {call.conversation_id}" if route is not None else "no live conversation",
    )
    return call


def _call_apply(call: Message, event: CallEvent) -> None:
    changed: list[str] = []
    leg_field = "caller_leg_uuid" if event.leg is CallLeg.CALLER else "callee_leg_uuid"
    if not getattr(call, leg_field):
        setattr(call, leg_field, event.uuid)
        changed.append(leg_field)
    status = _call_status(call, event)
    if status is not None and _RANK[status] > _RANK[Message.Status(call.status)]:
        call.status = status
        changed.append("status")
    if _takes_duration(call, event):
        call.duration = event.duration
        changed.append("duration")
    if changed:
        call.save(update_fields=[*changed, "updated_at"])
    if "status" in changed and _RANK[Message.Status(call.status)] == _FINAL_RANK:
        # Statuses only move forward: this runs once per call, in the event's transaction.
        conversation = call.conversation if call.conversation_id is not None else None
        event_message(type=EventType.CALL_COMPLETED, message=call, conversation=conversation)


def _call_status(call: Message, event: CallEvent) -> Message.Status | None:
    """The call's status after `event`, as seen by the people on it."""
    if event.leg is CallLeg.CALLEE:
        return Message.Status(event.status.value)
    if event.status is CallStatus.ANSWERED:
        # Vonage itself picks up the caller's leg to run the NCCO: nobody has answered yet.
        return None
    if event.status is CallStatus.COMPLETED and call.conversation_id is not None:
        # The caller hung up: a call the callee answered is complete; one still ringing the
        # callee was cancelled.
        answered = call.status == Message.Status.ANSWERED
        return Message.Status.COMPLETED if answered else Message.Status.CANCELLED
    return Message.Status(event.status.value)


def _takes_duration(call: Message, event: CallEvent) -> bool:
    """The callee's leg's duration is the conversation's length; the caller's counts only for
    a call that never connected anyone (an out-of-session caller hearing the talk)."""
    if event.duration is None or call.duration == event.duration:
        return False
    if event.leg is CallLeg.CALLEE:
        return True
    return not call.callee_leg_uuid and call.duration is None
