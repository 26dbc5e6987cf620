"""`numbers_retired`: how the pool tells the layers above that numbers left it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.rental import number_release, number_rent_one
from smsproxy.numbers.services.sync import numbers_sync
from smsproxy.numbers.signals import RetireReason, numbers_retired
from smsproxy.sandbox.models import SandboxNumber

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard() -> Iterator[list[dict[str, Any]]]:
    """What receivers of numbers_retired are told, with each number's status as stored then."""
    calls: list[dict[str, Any]] = []

    def receiver(*, numbers: list[VirtualNumber], reason: str, **kwargs: Any) -> None:
        stored = dict(
            VirtualNumber.objects.filter(pk__in=[n.pk for n in numbers]).values_list(
                "msisdn", "status"
            )
        )
        calls.append({"reason": reason, "stored": stored})

    numbers_retired.connect(receiver, dispatch_uid="test-heard")
    yield calls
    numbers_retired.disconnect(dispatch_uid="test-heard")


def test_release_tells_receivers_after_the_number_is_stored_released(
    heard: list[dict[str, Any]],
) -> None:
    number = number_rent_one(country="GB")

    number_release(number=number)

    assert heard == [{"reason": RetireReason.RELEASED, "stored": {number.msisdn: "released"}}]


def test_sync_tells_receivers_once_with_every_retired_number(
    heard: list[dict[str, Any]],
) -> None:
    first, second = number_rent_one(country="GB"), number_rent_one(country="GB")
    SandboxNumber.objects.update(cancelled_at=timezone.now())

    numbers_sync()

    assert heard == [
        {
            "reason": RetireReason.NOT_RENTED,
            "stored": {first.msisdn: "released", second.msisdn: "released"},
        }
    ]


def test_a_sync_retiring_nothing_tells_nobody(heard: list[dict[str, Any]]) -> None:
    number_rent_one(country="GB")

    numbers_sync()

    assert heard == []


def test_a_failing_receiver_does_not_undo_or_fail_the_release(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    number = number_rent_one(country="GB")
    numbers_retired.connect(broken, dispatch_uid="test-broken")
    try:
        number_release(number=number)
    finally:
        numbers_retired.disconnect(dispatch_uid="test-broken")

    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.RELEASED
    assert not SandboxNumber.objects.filter(msisdn=number.msisdn, cancelled_at=None).exists()
    assert "receiver bug" in caplog.text
