"""Keeping people's phone numbers out of logs."""

from __future__ import annotations

import re

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

_LONGEST_COUNTRY_CODE = 3


def mask_number(number: str) -> str:
    """A phone number for a log line: its country prefix and last 3 digits, the rest starred.

    Takes E.164 ("+447700900123") or Vonage's digits ("447700900123"), with or without
    separators: both give "+44*******123". An alphanumeric sender id ("Vonage") names a
    business, not a person, and is returned as it is.
    """
    value = number.strip()
    unsigned = value[1:] if value.startswith("+") else value
    if unsigned.isascii() and unsigned.isdigit():
        digits = unsigned  # the usual case, E.164 or Vonage's digits: no character to sort out
    elif any(char.isalpha() for char in value):
        return value
    else:
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


# A phone number inside free text (a provider's error text, say): 7 to 15 digits, optionally
# after a '+', with single spaces or dashes between them; not part of a longer word or number
# (a Vonage message id such as "0A0000001234ABCD", a price such as "0.03330000"), nor a row id
# ("#1234567").
_NUMBER_IN_TEXT = re.compile(r"(?<![\w+#])(?<!\d\.)\+?\d(?:[ -]?\d){6,14}(?!\w|\.\d)")


def text_mask_numbers(text: str) -> str:
    """`text` with every phone number in it masked as `mask_number` does."""
    return _NUMBER_IN_TEXT.sub(lambda match: mask_number(match.group()), text)
