"""Reading people's numbers (rule 10's local check): smsproxy.common.phone."""

from __future__ import annotations

from typing import Any

import pytest

from smsproxy.common.phone import phone_parse

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
