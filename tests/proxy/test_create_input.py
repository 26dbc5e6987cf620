"""`create_input.create_arguments` (the create body read without DRF) never accepts what the
serializer refuses, and answers exactly its `validated_data` when it accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from smsproxy.proxy.create_input import create_arguments
from smsproxy.proxy.serializers import ConversationCreateInputSerializer
from smsproxy.proxy.services.participants import NAME_MAX_LENGTH

# Values of every JSON type, and strings near each field's limits and checks.
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(
        [
            "",
            "  ",
            "1",
            "true",
            "avoid-sticky ",
            "prefer-sticky",
            "a\x00b",
            "\ud800",
            "x" * 201,
            "Ann 07700 900123",
            "+447700900123",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_NUMBERS = st.one_of(
    st.sampled_from(
        [
            "+447700900123",
            " 447700900124 ",
            "07700 900125",
            "+15550100123",
            "+4474 0000 0001",
            "12",
            "+44abc",
            "+447700900123" + " " * 30,
            "9" * 33,
        ]
    ),
    _ODD,
)
_NAMES = st.one_of(
    st.sampled_from(["", "Guest", "  Ann   Lee ", "x" * NAME_MAX_LENGTH, "Bob\u00e9"]), _ODD
)


_EDGES: dict[str, Any] = {
    "number": st.one_of(_NUMBERS, st.just("+4474" + "0" * 27), st.just("+4474" + "0" * 28)),
    "name": st.one_of(_NAMES, st.just("y" * (NAME_MAX_LENGTH + 1))),
    "reference": st.one_of(
        st.sampled_from(["", "booking-1", " r ", "r" * 200, "r" * 201, " " + "r" * 200]), _ODD
    ),
    "ttl": st.one_of(
        st.sampled_from([None, 1, 0, 3600, 10 * 366 * 24 * 3600, 10 * 366 * 24 * 3600 + 1]),
        _ODD,
    ),
    "intro": st.one_of(st.booleans(), _ODD),
    "number_selection": st.one_of(st.sampled_from(["avoid-sticky", "prefer-sticky"]), _ODD),
}


@st.composite
def _body(draw: Any) -> Any:
    """A valid body (the optional fields present or not), then a few of its values replaced,
    a participant added or dropped, or the whole body something else."""
    people = [
        {"number": f"+44740000{index:04d}", "name": "Guest"}
        for index in draw(st.lists(st.integers(0, 9999), min_size=2, max_size=2, unique=True))
    ]
    body: dict[str, Any] = {"participants": people}
    for key in ("reference", "ttl", "intro", "number_selection"):
        if draw(st.booleans()):
            body[key] = draw(_EDGES[key])
    for _ in range(draw(st.integers(0, 2))):
        change = draw(st.integers(0, 9))
        if change < 4:
            person = people[draw(st.integers(0, 1))]
            field = draw(st.sampled_from(["number", "name"]))
            if not isinstance(person, dict):
                continue
            if draw(st.integers(0, 5)):
                person[field] = draw(_EDGES[field])
            else:
                person.pop(field, None)
        elif change < 7:
            key = draw(st.sampled_from(["reference", "ttl", "intro", "number_selection"]))
            body[key] = draw(_EDGES[key])
        elif change == 7:
            people[draw(st.integers(0, 1))] = draw(_ODD)
        elif change == 8:
            body["participants"] = draw(st.sampled_from([people[:1], [*people, people[0]], None]))
        else:
            return draw(_ODD)
    return body


@settings(max_examples=400, deadline=None)
@given(_body())
def test_the_direct_read_agrees_with_the_serializer(body: Any) -> None:
    serializer = ConversationCreateInputSerializer(data=body)
    valid = serializer.is_valid()
    arguments = create_arguments(body)
    if arguments is not None:
        assert valid, serializer.errors
        assert arguments == dict(serializer.validated_data)


def test_a_plain_valid_body_is_read_directly() -> None:
    """The bodies clients send (and the bench sends) take the direct path."""
    body = {
        "participants": [
            {"number": "+447400000001", "name": "Guest"},
            {"number": "07700 900125", "name": " Host  Name "},
        ],
        "reference": "booking-1",
        "ttl": 3600,
        "intro": False,
        "number_selection": "prefer-sticky",
    }
    serializer = ConversationCreateInputSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert create_arguments(body) == dict(serializer.validated_data)
    minimal = {"participants": [{"number": "+447400000001"}, {"number": "+447400000002"}]}
    arguments = create_arguments(minimal)
    assert arguments is not None
    assert (arguments["reference"], arguments["ttl"], arguments["intro"]) == ("", None, True)
    assert arguments["number_selection"] == "avoid-sticky"
