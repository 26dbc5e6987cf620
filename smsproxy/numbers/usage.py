"""What uses a number, asked of the layers above without importing them.

The numbers app never imports the proxy (its layer is above). Before staff release numbers the
admin names the conversations a release would close: the proxy registers a lookup here in its
AppConfig.ready, and the numbers app calls whatever is registered. With nothing registered a
number has no known users, and the confirmation shows only its participant count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from smsproxy.numbers.models import VirtualNumber


@dataclass(frozen=True)
class LiveUse:
    """A live conversation that uses a number, as staff recognise it."""

    conversation_pk: int
    conversation_id: str  # the public id the marketplace knows
    reference: str
    participants: str  # the display names, "Alice ↔ Bob"


LiveUseLookup = Callable[[Sequence[VirtualNumber]], Mapping[int, Sequence[LiveUse]]]

_lookups: dict[str, LiveUseLookup] = {}


def live_use_lookup_register(*, name: str, lookup: LiveUseLookup) -> None:
    """Register (or replace, by `name`) a lookup: numbers → {number pk: its live uses}."""
    _lookups[name] = lookup


def number_live_uses(*, numbers: Sequence[VirtualNumber]) -> dict[int, list[LiveUse]]:
    """Every registered lookup's live uses of `numbers`, by number pk, each use once."""
    uses: dict[int, list[LiveUse]] = {number.pk: [] for number in numbers}
    if not numbers:
        return uses
    for lookup in _lookups.values():
        for number_pk, found in lookup(numbers).items():
            known = uses.setdefault(number_pk, [])
            known.extend(use for use in found if use not in known)
    return uses


def live_uses_text(uses: Sequence[LiveUse]) -> str:
    """'booking-42 (Alice ↔ Bob), 3f2c… (Carol ↔ Dan)': conversations as staff recognise them."""
    return ", ".join(f"{use.reference or use.conversation_id} ({use.participants})" for use in uses)
