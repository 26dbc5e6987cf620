"""The API's reading of a new conversation: parsed numbers, checked names, ttl and reference,
handed to the service as ParticipantSpecs; the error codes of DESIGN §7."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import exceptions

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import RealNumber
from smsproxy.proxy.serializers import ConversationCreateInputSerializer
from smsproxy.proxy.services.participants import ParticipantSpec


def person(index: int) -> str:
    return f"+447700900{500 + index:03d}"


def read(data: dict[str, Any]) -> dict[str, Any]:
    serializer = ConversationCreateInputSerializer(data=data)
    assert serializer.is_valid(), serializer.errors
    return dict(serializer.validated_data)


def refused(data: dict[str, Any]) -> Exception:
    serializer = ConversationCreateInputSerializer(data=data)
    assert not serializer.is_valid()
    return serializer.application_error()


def test_valid_input_becomes_two_specs() -> None:
    data = read(
        {
            "participants": [
                {"number": "07700 900500", "name": "  Ann   Lee "},
                {"number": "+1 555 010 0123"},
            ],
            "reference": " booking-42 ",
            "ttl": 3600,
        }
    )
    assert data == {
        "participants": [
            ParticipantSpec(
                position=0, name="Ann Lee", number=RealNumber(e164=person(0), country="GB")
            ),
            ParticipantSpec(
                position=1, name="", number=RealNumber(e164="+15550100123", country="US")
            ),
        ],
        "reference": "booking-42",
        "ttl": 3600,
        "intro": True,
        "number_selection": "avoid-sticky",
    }


def test_defaults() -> None:
    data = read({"participants": [{"number": person(0)}, {"number": person(1), "name": "  "}]})
    assert [spec.name for spec in data["participants"]] == ["", ""]
    assert (data["reference"], data["ttl"]) == ("", None)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_conversation_needs_exactly_two_participants(count: int) -> None:
    error = refused({"participants": [{"number": person(i)} for i in range(count)]})
    assert isinstance(error, ApplicationError)
    assert error.code == "invalid_participants"
    assert f"{count} given" in error.detail
    assert error.fields == {"participants": ["Give exactly two participants."]}


def test_an_impossible_number_is_refused_naming_the_participant() -> None:
    error = refused(
        {"participants": [{"number": person(0), "name": "Alice"}, {"number": "12", "name": "Bob"}]}
    )
    assert isinstance(error, ApplicationError)
    assert error.code == "invalid_number"
    assert "participant 2 (Bob), 12," in error.detail
    assert error.fields == {"participants": {"1": {"number": ["Not a valid phone number."]}}}


@pytest.mark.parametrize("name", ["Bob 07700 900456", "Bob +44 7700 900456", "call 447700900456"])
def test_a_name_containing_a_phone_number_is_refused(name: str) -> None:
    """The name is sent to the other participant in the intro SMS (rule 9)."""
    error = refused(
        {
            "participants": [
                {"number": person(0), "name": "Alice"},
                {"number": person(1), "name": name},
            ]
        }
    )
    assert isinstance(error, ApplicationError)
    assert error.code == "invalid_participants"
    assert "participant 2" in error.detail
    assert "900456" not in error.detail  # the error does not repeat the number
    assert error.fields == {"participants": {"1": {"name": ["Must not contain a phone number."]}}}


def test_a_name_with_short_digits_is_kept() -> None:
    data = read({"participants": [{"number": person(0), "name": "Flat 12"}, {"number": person(1)}]})
    assert data["participants"][0].name == "Flat 12"


def test_a_bad_number_and_a_bad_name_are_both_reported_as_invalid_number() -> None:
    error = refused(
        {
            "participants": [
                {"number": person(0), "name": "Ann 07700 900456"},
                {"number": "12", "name": "Bob"},
            ]
        }
    )
    assert isinstance(error, ApplicationError)
    assert error.code == "invalid_number"
    assert "participant 2 (Bob)" in error.detail
    assert error.fields == {
        "participants": {
            "0": {"name": ["Must not contain a phone number."]},
            "1": {"number": ["Not a valid phone number."]},
        }
    }


@pytest.mark.parametrize("ttl", [0, -5, True, 10**12, "soon"])
def test_ttl_must_be_positive_seconds(ttl: Any) -> None:
    error = refused({"participants": [{"number": person(0)}, {"number": person(1)}], "ttl": ttl})
    assert isinstance(error, exceptions.ValidationError)
    assert isinstance(error.detail, dict)
    assert set(error.detail) == {"ttl"}


def test_a_too_long_name_is_a_validation_error() -> None:
    error = refused(
        {"participants": [{"number": person(0), "name": "A" * 101}, {"number": person(1)}]}
    )
    assert isinstance(error, exceptions.ValidationError)
    assert isinstance(error.detail, dict)
    assert error.detail == {
        "participants": {0: {"name": ["Ensure this field has no more than 100 characters."]}}
    }
