"""`message_status_matches_direction`, written with patterns (migration 0009), allows and refuses
exactly the rows its IN-list form did: every direction and status (and near misses of both),
through the model's constraint, the former condition and the database itself.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import CheckConstraint, Q

from smsproxy.proxy.models import CALL_ONLY_STATUSES, CALL_STATUSES, Message, one_of

pytestmark = pytest.mark.django_db

# The constraint as migrations 0007 and 0008 left it.
FORMER_CONDITION = (
    Q(direction="inbound", status__in=["received", "unrouted", "rejected", "blocked"])
    | (Q(direction="outbound") & ~Q(status__in=["received", "unrouted", *CALL_ONLY_STATUSES]))
    | Q(direction="call", status__in=CALL_STATUSES)
)

DIRECTIONS = [*Message.Direction.values, "", "sms", "INBOUND", "call\n", " call"]
# Every status of the model, and texts a pattern could wrongly match: other case, a final
# newline (Python's `$` matches before one), spaces, prefixes and suffixes, pattern syntax.
STATUSES = [
    *Message.Status.values,
    "",
    "other",
    "Received",
    "QUEUED",
    "received\n",
    "failed\n",
    "\nreceived",
    " received",
    "received ",
    "receivedx",
    "xreceived",
    "receive",
    "received|sent",
    "(received)",
    "rec.ived",
    ".*",
    "\\Z",
]


def _allowed(direction: str, status: str) -> bool:
    """The rule in plain Python: which statuses each direction may have."""
    if direction == "inbound":
        return status in {"received", "unrouted", "rejected", "blocked"}
    if direction == "outbound":
        return status not in {"received", "unrouted", *CALL_ONLY_STATUSES}
    if direction == "call":
        return status in CALL_STATUSES
    return False


def _constraint() -> CheckConstraint:
    (constraint,) = [
        c for c in Message._meta.constraints if c.name == "message_status_matches_direction"
    ]
    assert isinstance(constraint, CheckConstraint)
    return constraint


def _database_allows(direction: str, status: str) -> bool:
    try:
        with transaction.atomic():
            Message.objects.create(
                direction=direction, status=status, sender="+447700900001", recipient="+4477009"
            )
    except IntegrityError:
        return False
    return True


def test_the_patterns_are_the_lists() -> None:
    assert one_of(("received", "sent")) == r"\A(?:received|sent)\Z"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_status_allowed_and_refused_as_before(direction: str) -> None:
    constraint = _constraint()
    for status in STATUSES:
        expected = _allowed(direction, status)
        values = {"direction": direction, "status": status}
        assert FORMER_CONDITION.check(values, using=connection.alias) is expected, values
        try:
            constraint.validate(Message, Message(**values))
        except ValidationError:
            model_allows = False
        else:
            model_allows = True
        assert model_allows is expected, values
        assert _database_allows(direction, status) is expected, values
