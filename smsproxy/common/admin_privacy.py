"""People's real numbers in the admin: in full only for staff allowed to see them.

Support staff look at conversations to answer complaints; most of them need to know which
conversation a number is in, not the number itself. The `proxy.view_real_numbers` permission
(declared on the participant model; superusers have every permission) shows numbers in full;
without it, the admin shows them masked as log lines do. Searching still matches the full
number, so a number given by the person who complains finds their conversation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.http import HttpRequest

from smsproxy.common.privacy import mask_number

VIEW_REAL_NUMBERS = "proxy.view_real_numbers"


def can_view_real_numbers(request: HttpRequest) -> bool:
    return request.user.has_perm(VIEW_REAL_NUMBERS)


def real_number_display(number: str, *, request: HttpRequest) -> str:
    """`number` as `request`'s user may see it."""
    return number if can_view_real_numbers(request) else mask_number(number)


def _swapped(names: Sequence[Any], swaps: Mapping[str, str]) -> list[Any]:
    return [swaps.get(name, name) if isinstance(name, str) else name for name in names]


class RealNumberMaskingMixin:
    """For a ModelAdmin or an inline showing real numbers: `masked_fields` maps each field that
    may hold one to the admin method showing it masked, which replaces the field (in lists,
    forms and fieldsets) for staff without `view_real_numbers`."""

    masked_fields: ClassVar[Mapping[str, str]] = {}

    def get_list_display(self, request: HttpRequest) -> Any:
        names = super().get_list_display(request)  # type: ignore[misc]
        return names if can_view_real_numbers(request) else _swapped(names, self.masked_fields)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = super().get_fields(request, obj)  # type: ignore[misc]
        return names if can_view_real_numbers(request) else _swapped(names, self.masked_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = super().get_readonly_fields(request, obj)  # type: ignore[misc]
        if can_view_real_numbers(request):
            return names
        # A masked field is shown by a method, and a method can only be read.
        return [*_swapped(names, self.masked_fields), *self.masked_fields.values()]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if can_view_real_numbers(request):
            return fieldsets
        return [
            (title, {**options, "fields": _swapped(options["fields"], self.masked_fields)})
            for title, options in fieldsets
        ]
