"""What the proxy does when the pool releases numbers: the handler, and the sweep's recovery."""

from __future__ import annotations

import pytest
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.signals import numbers_retired
from smsproxy.proxy.handlers import numbers_retired_handle
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.services.released_numbers import released_numbers_settle
from smsproxy.proxy.services.sweep import outbox_sweep
from tests.factories import MessageFactory, ParticipantFactory, VirtualNumberFactory

pytestmark = pytest.mark.django_db


def _release_without_telling_anyone(number: VirtualNumber) -> None:
    """As if the process died between the release's commit and the signal's handler."""
    VirtualNumber.objects.filter(pk=number.pk).update(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )


def test_the_handler_is_connected_to_numbers_retired() -> None:
    number = VirtualNumberFactory.create()
    participant = ParticipantFactory.create(proxy_number=number)
    _release_without_telling_anyone(number)

    numbers_retired.send(sender=VirtualNumber, numbers=[number], reason="released")

    participant.conversation.refresh_from_db()
    assert participant.conversation.status == Conversation.Status.CLOSED


def test_the_handler_closes_live_conversations_and_fails_queued_sms_of_those_numbers() -> None:
    gone, kept = VirtualNumberFactory.create(), VirtualNumberFactory.create()
    on_gone = ParticipantFactory.create(proxy_number=gone)
    partner = ParticipantFactory.create(conversation=on_gone.conversation, proxy_number=kept)
    elsewhere = ParticipantFactory.create(proxy_number=kept)
    queued = MessageFactory.create(sender=gone.msisdn)
    queued_elsewhere = MessageFactory.create(sender=kept.msisdn)
    _release_without_telling_anyone(gone)

    numbers_retired_handle(numbers=[gone], reason="released")

    on_gone.conversation.refresh_from_db()
    assert on_gone.conversation.status == Conversation.Status.CLOSED
    assert on_gone.conversation.close_reason == Conversation.CloseReason.STAFF
    partner.refresh_from_db()
    assert partner.active is False
    kept.refresh_from_db()
    assert kept.assigned_participants == 1  # the partner's load is freed, the other stays
    elsewhere.conversation.refresh_from_db()
    assert elsewhere.conversation.status == Conversation.Status.ACTIVE
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == (Message.Status.FAILED, "sender_released")
    assert queued.error_text == (
        f"Not sent: the proxy number {gone.msisdn} was released before it went out."
    )
    queued_elsewhere.refresh_from_db()
    assert queued_elsewhere.status == Message.Status.QUEUED


def test_a_number_brought_back_meanwhile_is_left_alone() -> None:
    number = VirtualNumberFactory.create()
    participant = ParticipantFactory.create(proxy_number=number)

    assert released_numbers_settle(numbers=[number]) == 0

    participant.conversation.refresh_from_db()
    assert participant.conversation.status == Conversation.Status.ACTIVE


def test_the_sweep_settles_a_release_whose_handler_never_ran() -> None:
    number = VirtualNumberFactory.create()
    participant = ParticipantFactory.create(proxy_number=number)
    queued = MessageFactory.create(sender=number.msisdn)
    _release_without_telling_anyone(number)

    swept = outbox_sweep()

    assert swept.released == 1
    participant.conversation.refresh_from_db()
    assert participant.conversation.close_reason == Conversation.CloseReason.STAFF
    number.refresh_from_db()
    assert number.assigned_participants == 0
    queued.refresh_from_db()
    assert queued.error_code == "sender_released"
    assert outbox_sweep().released == 0
