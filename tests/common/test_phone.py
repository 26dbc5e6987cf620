"""The one phone-number module: reading people's numbers (rule 10's local check), normalising
staff input, and which numbers may be sent an SMS."""

from __future__ import annotations

from typing import Any

import pytest

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import is_fictitious, msisdn_normalize, phone_parse, phone_receives_sms

US_PERSON = "+15550100123"


@pytest.mark.parametrize(
    "text",
    ["+447700900123", "447700900123", "07700 900123", "07700-900-123", "+44 (0)7700 900123"],
)
def test_real_number_parse_accepts_e164_with_or_without_plus_and_national(text: str) -> None:
    parsed = phone_parse(number=text)
    assert parsed is not None
    assert parsed.e164 == "+447700900123"
    assert parsed.country == "GB"


def test_real_number_parse_reads_national_with_the_default_country(settings: Any) -> None:
    settings.PROXY_DEFAULT_COUNTRY = "US"
    parsed = phone_parse(number="(555) 010-0123")
    assert parsed is not None
    assert (parsed.e164, parsed.country) == (US_PERSON, "US")


@pytest.mark.parametrize("text", ["", "   ", "12", "+44 20", "call me", "+4477009001234567890"])
def test_real_number_parse_rejects_impossible_numbers(text: str) -> None:
    assert phone_parse(number=text) is None


@pytest.mark.parametrize(
    ("number", "receives"),
    [
        ("+447700900123", True),  # Ofcom's drama range (fictitious)
        ("+15550100123", True),  # US fiction range
        ("+447911123456", True),  # a GB mobile
        ("+14155552671", True),  # US: fixed line or mobile
        ("+447700901001", True),  # no known type: metadata lags new mobile ranges
        ("+881612345678", False),  # satellite, classed mobile, premium rate
        ("+882345678901", False),  # international networks
        ("+80012345678", False),  # international freephone
        ("+442071234567", False),  # a London landline
        ("+449001234567", False),  # GB premium rate
        ("+448001234567", False),  # GB toll free
        ("not a number", False),
    ],
)
def test_phone_receives_sms(number: str, receives: bool) -> None:
    assert phone_receives_sms(number) is receives


def test_is_fictitious_covers_both_ranges_only() -> None:
    assert is_fictitious("+447700900000") and is_fictitious("+15550100999")
    assert not is_fictitious("+447700901000") and not is_fictitious("+15550101000")


@pytest.mark.parametrize("raw", ["447700900123", "+44 7700 900123", "(+44) 7700-900123"])
def test_msisdn_normalize(raw: str) -> None:
    assert msisdn_normalize(raw) == "+447700900123"


def test_msisdn_normalize_refuses_text() -> None:
    with pytest.raises(ApplicationError) as raised:
        msisdn_normalize("Vonage")
    assert raised.value.code == "invalid_number"
