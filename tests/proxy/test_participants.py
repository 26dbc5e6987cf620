"""The services' own checks of the participants: Number Insight, the same person twice, one of
our proxy numbers (what the API serializer cannot know). Sandbox provider."""

from __future__ import annotations

import pytest
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services.conversations import conversation_create
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, participant_specs

pytestmark = pytest.mark.django_db


def person(index: int) -> str:
    return f"+447700900{500 + index:03d}"


def snapshot() -> tuple[int, int, int]:
    return (Conversation.objects.count(), Participant.objects.count(), Message.objects.count())


def test_the_same_person_twice_is_refused_whatever_the_format() -> None:
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        conversation_create(participants=participant_specs("+447700900123", "07700 900123"))
    assert error.value.code == "invalid_participants"
    assert snapshot() == (0, 0, 0)


def test_a_number_insight_rejects_is_refused() -> None:
    """Possible by its length, but outside any allocated range: the sandbox's insight says no."""
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        open_between("+447700901000", person(1))
    assert error.value.code == "invalid_number"
    assert "participant 1 (Alice)" in error.value.detail
    assert snapshot() == (0, 0, 0)


@pytest.mark.parametrize("status", [VirtualNumber.Status.ACTIVE, VirtualNumber.Status.RELEASED])
def test_one_of_our_proxy_numbers_is_refused_as_a_participant(status: str) -> None:
    VirtualNumberFactory.create_batch(2)
    ours = VirtualNumberFactory.create(
        msisdn=person(1),
        status=status,
        released_at=timezone.now() if status == VirtualNumber.Status.RELEASED else None,
    )
    with pytest.raises(ApplicationError) as error:
        open_between(person(0), "07700 900501")
    assert error.value.code == "invalid_number"
    assert "participant 2 (Bob)" in error.value.detail
    assert ours.msisdn in error.value.detail
    assert list(error.value.fields["participants"]) == ["1"]
    assert snapshot() == (0, 0, 0)
