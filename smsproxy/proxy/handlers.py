"""The proxy's receivers of what lower layers tell it (connected in ProxyConfig.ready)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.services.released_numbers import released_numbers_settle


def numbers_retired_handle(*, numbers: Sequence[VirtualNumber], **kwargs: Any) -> None:
    """The pool released numbers: close their live conversations, fail SMS queued from them."""
    released_numbers_settle(numbers=numbers)
