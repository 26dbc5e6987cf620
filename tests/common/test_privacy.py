"""Phone numbers in logs: the country prefix and the last 3 digits only."""

from __future__ import annotations

import pytest

from smsproxy.common.privacy import mask_number, text_mask_numbers


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+447700900123", "+44*******123"),
        ("447700900123", "+44*******123"),  # Vonage's form
        ("+44 7700 900123", "+44*******123"),
        ("15550100123", "+1*******123"),
        ("+35312345678", "+353*****678"),
        ("+999123456789", "+*********789"),  # no such country code: nothing kept at the front
        ("123", "+1**"),
        ("Vonage", "Vonage"),  # an alphanumeric sender id is not a person's number
        ("", ""),
        ("+", "+"),
        (" +447700900123 ", "+44*******123"),
        ("++447700900123", "+44*******123"),
        ("0", "+*"),
        ("+٤٤٧٧٠٠٩٠٠١٢٣", "+٤٤*******١٢٣"),  # digits, but not ASCII ones: as before
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Invalid to param: '+447700900123'", "Invalid to param: '+44*******123'"),
        ("to 447700900123.", "to +44*******123."),
        ("+44 7700 900123 and +1-555-010-0123", "+44*******123 and +1*******123"),
        # Not phone numbers: Vonage message ids, prices, short numbers.
        ("1 part: 0A0000001234ABCD", "1 part: 0A0000001234ABCD"),
        ("price 0.03330000, #1234567", "price 0.03330000, #1234567"),
    ],
)
def test_text_mask_numbers(text: str, masked: str) -> None:
    assert text_mask_numbers(text) == masked
