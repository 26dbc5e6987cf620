"""The people of a conversation: the typed participant spec and the checks of their real numbers.

A `ParticipantSpec` is what the edge (the API serializer) hands the services once it has parsed
the number with `smsproxy.common.phone` and checked the name. The services trust it; what they
still check here needs the provider or the database: Number Insight (rule 10), the same person
twice, and a number that is one of our own proxy numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from django.db import connection

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import RealNumber, country_clean, is_e164
from smsproxy.common.privacy import mask_number, text_mask_numbers
from smsproxy.gateway.base import InvalidNumberError, ProviderError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Participant

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = Participant._meta.get_field("name").max_length or 100


@dataclass(frozen=True)
class ParticipantSpec:
    """One participant as the request gave it: already parsed and checked (see the module)."""

    position: int  # 0-based, as in the request
    name: str  # whitespace collapsed; no phone number in it (rule 9)
    number: RealNumber


def participant_label(*, position: int, name: str) -> str:
    """How errors name a participant: "participant 1 (Ann)", counted from 1."""
    return f"participant {position + 1}" + (f" ({name})" if name else "")


def participant_fields(*, position: int, field: str, messages: Sequence[str]) -> dict[str, Any]:
    # Keyed by the participant's index, as DRF reports errors of list items.
    return {"participants": {str(position): {field: list(messages)}}}


def invalid_number_error(*, position: int, name: str, shown: str) -> ApplicationError:
    label = participant_label(position=position, name=name)
    return ApplicationError(
        f"The number of {label}, {shown or '(empty)'}, is not a valid phone number.",
        code="invalid_number",
        fields=participant_fields(
            position=position, field="number", messages=["Not a valid phone number."]
        ),
    )


def real_number_confirm(*, number: RealNumber) -> RealNumber:
    """Number Insight basic: validity, canonical format and country (rule 10).

    Raises InvalidNumberError when the provider says the number is not valid. When insight is
    unavailable the local parse stands: opening a conversation should not depend on it.
    """
    try:
        # Asked in international format, so without `country`: Vonage refuses a country that
        # contradicts the prefix, and +44 also covers GG, JE and IM.
        insight = gateway.get_provider().insight_basic(number=number.e164)
    except InvalidNumberError:
        raise
    except ProviderError as exc:
        # A transient failure is expected now and then; a permanent one needs looking at.
        logger.log(
            logging.WARNING if exc.transient else logging.ERROR,
            "Number Insight failed for %s (%s); using the local parse",
            mask_number(number.e164),
            text_mask_numbers(str(exc)),
        )
        return number
    if not is_e164(insight.e164):
        logger.error(
            "Number Insight answered %r for %s; using the local parse",
            text_mask_numbers(insight.e164),
            mask_number(number.e164),
        )
        return number
    return RealNumber(e164=insight.e164, country=country_clean(insight.country) or number.country)


def participants_confirm(*, specs: Sequence[ParticipantSpec]) -> list[ParticipantSpec]:
    """The specs with Insight's canonical numbers and countries, or an ApplicationError.

    The database checks run before Insight (a request naming one of our numbers costs no
    provider call) and again when Insight rewrote a number, which may make it one of ours or
    the other participant's.
    """
    _participants_distinct_check(specs=specs)
    confirmed = [_participant_confirm(spec=spec) for spec in specs]
    if confirmed != list(specs):
        _participants_distinct_check(specs=confirmed)
    return confirmed


def _participant_confirm(*, spec: ParticipantSpec) -> ParticipantSpec:
    try:
        number = real_number_confirm(number=spec.number)
    except InvalidNumberError as exc:
        raise invalid_number_error(
            position=spec.position, name=spec.name, shown=spec.number.e164
        ) from exc
    return replace(spec, number=number)


def _participants_distinct_check(*, specs: Sequence[ParticipantSpec]) -> None:
    """Two different people, neither of them one of our proxy numbers.

    Released numbers count too: until the provider gives them to someone else they may still
    route to our webhook, and a conversation with ourselves would forward SMS in a loop.
    """
    if len({spec.number.e164 for spec in specs}) < len(specs):
        raise ApplicationError(
            "The two participants have the same number; a conversation needs two different people.",
            code="invalid_participants",
            fields={"participants": ["The two numbers must differ."]},
        )
    pool = _pool_numbers_among(numbers=[spec.number.e164 for spec in specs])
    for spec in specs:
        if spec.number.e164 in pool:
            raise ApplicationError(
                f"The number of {participant_label(position=spec.position, name=spec.name)}, "
                f"{spec.number.e164}, is one of this service's proxy numbers, not a person's.",
                code="invalid_number",
                fields=participant_fields(
                    position=spec.position,
                    field="number",
                    messages=["A proxy number of this service, not a real one."],
                ),
            )


def _pool_numbers_among(*, numbers: Sequence[str]) -> set[str]:
    """Which of these numbers are numbers of the pool, released or not (one indexed lookup,
    its SQL written once per count: it runs on every conversation opened)."""
    with connection.cursor() as cursor:
        cursor.execute(_pool_numbers_sql(len(numbers)), list(numbers))
        return {row[0] for row in cursor.fetchall()}


@cache
def _pool_numbers_sql(count: int) -> str:
    table = connection.ops.quote_name(VirtualNumber._meta.db_table)
    column = connection.ops.quote_name(str(VirtualNumber._meta.get_field("msisdn").column))
    # Only the model's own table and column names are interpolated; the values are parameters.
    return f"SELECT {column} FROM {table} WHERE {column} IN ({', '.join(['%s'] * count)})"  # noqa: S608
