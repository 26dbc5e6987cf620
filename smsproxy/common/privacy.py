"""Keeping people's phone numbers out of logs."""

from __future__ import annotations

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

_LONGEST_COUNTRY_CODE = 3


def mask_number(number: str) -> str:
    """A phone number for a log line: its country prefix and last 3 digits, the rest starred.

    Takes E.164 ("+447700900123") or Vonage's digits ("447700900123"), with or without
    separators: both give "+44*******123". An alphanumeric sender id ("Vonage") names a
    business, not a person, and is returned as it is.
    """
    value = number.strip()
    if any(char.isalpha() for char in value):
        return value
    digits = "".join(char for char in value if char.isdigit())
    if not digits:
        return value
    # Country calling codes are prefix-free: the first (shortest) match is the one.
    country_code = next(
        (
            digits[:length]
            for length in range(1, _LONGEST_COUNTRY_CODE + 1)
            if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE
        ),
        "",
    )
    national = digits[len(country_code) :]
    shown = national[-3:] if len(national) > 3 else ""
    return f"+{country_code}{'*' * (len(national) - len(shown))}{shown}"
