"""Releasing several numbers at once: the one rule the admin and `release_numbers` follow.

The rule (README, "Releasing numbers"):

1. Numbers already released are skipped: there is nothing left to do for them.
2. The refusal is all-or-nothing: when any other number still serves live conversations and
   the release is not forced, nothing is released, and the refusal names every such number
   and its conversations.
3. The release itself goes number by number: a cancelled rental cannot be taken back, so one
   number the provider refuses (or that a conversation took meanwhile) is reported and the
   others are still released.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.rental import number_release
from smsproxy.numbers.usage import LiveUse, live_uses_text, number_live_uses


@dataclass
class ReleaseOutcome:
    released: list[VirtualNumber] = field(default_factory=list)
    already_released: list[VirtualNumber] = field(default_factory=list)
    # (number, why) for each number refused while releasing the others.
    failed: list[tuple[VirtualNumber, str]] = field(default_factory=list)
    # The live conversations each released number served (closed by the forced release).
    closed: dict[int, list[LiveUse]] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleasePreview:
    """What releasing these numbers would do, for a confirmation page."""

    numbers: list[VirtualNumber]
    uses: dict[int, list[LiveUse]]

    @property
    def already_released(self) -> list[VirtualNumber]:
        return [number for number in self.numbers if _released(number)]

    @property
    def in_use(self) -> list[VirtualNumber]:
        return [
            number
            for number in self.numbers
            if not _released(number) and number.assigned_participants
        ]


def numbers_release_preview(*, numbers: Sequence[VirtualNumber]) -> ReleasePreview:
    """The numbers as they are now, with the live conversations each would close."""
    fresh = list(VirtualNumber.objects.filter(pk__in=[n.pk for n in numbers]).order_by("msisdn"))
    busy = [number for number in fresh if not _released(number) and number.assigned_participants]
    uses = number_live_uses(numbers=busy)
    return ReleasePreview(
        numbers=fresh, uses={number.pk: uses.get(number.pk, []) for number in fresh}
    )


def numbers_release(
    *, numbers: Sequence[VirtualNumber], force: bool = False, actor: Any = None
) -> ReleaseOutcome:
    """Release `numbers` by the rule above; raises ApplicationError `number_in_use` (409)."""
    preview = numbers_release_preview(numbers=numbers)
    in_use = preview.in_use
    if in_use and not force:
        raise ApplicationError(
            "In live conversations: "
            + "; ".join(_in_use_text(number, preview.uses[number.pk]) for number in in_use)
            + ". Nothing was released; force the release to close those conversations.",
            code="number_in_use",
            status=HTTPStatus.CONFLICT,
        )
    outcome = ReleaseOutcome(already_released=preview.already_released)
    for number in preview.numbers:
        if _released(number):
            continue
        try:
            number_release(number=number, force=force, actor=actor)
        except ApplicationError as exc:
            outcome.failed.append((number, exc.detail))
            continue
        outcome.released.append(number)
        if preview.uses[number.pk]:
            outcome.closed[number.pk] = preview.uses[number.pk]
    return outcome


def _in_use_text(number: VirtualNumber, uses: Sequence[LiveUse]) -> str:
    text = f"{number.msisdn} ({number.assigned_participants} live participant(s)"
    return text + (f": {live_uses_text(uses)})" if uses else ")")


def _released(number: VirtualNumber) -> bool:
    return number.status == VirtualNumber.Status.RELEASED
