"""Phone numbers: the one place that parses, normalises and formats them (STYLE: E.164 inside).

Every number stored or passed between layers is E.164 with a leading '+' ("+447700900123").
Text from people (the API, the admin, commands) is read here; Vonage's wire format (digits
without '+') is converted inside the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from django.conf import settings

from smsproxy.common.errors import ApplicationError

# A number in E.164 with '+', as numbers are stored and cross the provider boundary.
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class RealNumber:
    """A person's number: canonical E.164 (with '+') and ISO country ("" if unknown)."""

    e164: str
    country: str


def is_e164(value: str) -> bool:
    return bool(E164_RE.match(value))


def country_clean(code: str | None) -> str:
    """An ISO 3166-1 alpha-2 code in upper case, or "" for an unknown or non-geographic one."""
    code = (code or "").strip().upper()
    # phonenumbers says "ZZ" for an unknown region and "001" for non-geographic numbers.
    return code if len(code) == 2 and code.isalpha() and code != "ZZ" else ""


def phone_parse(*, number: str, default_country: str | None = None) -> RealNumber | None:
    """Rule 10's local check: E.164 with or without '+', or national format.

    Returns None when `phonenumbers` cannot read the text as a possible number. Validity is left
    to Number Insight: `is_valid_number` would reject the fictitious ranges demos use.
    """
    text = number.strip()
    region = (default_country or settings.PROXY_DEFAULT_COUNTRY).upper()
    if not text or re.search(r"[A-Za-z]", text):
        return None
    attempts: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        attempts.append((text, None))
    else:
        attempts.append((text, region))
        # International format written without the '+'.
        attempts.append(("+" + re.sub(r"\D", "", text), None))
    for candidate, candidate_region in attempts:
        try:
            parsed = phonenumbers.parse(candidate, candidate_region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_possible_number(parsed):
            continue
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if not is_e164(e164):
            continue
        country = phonenumbers.region_code_for_number(
            parsed
        ) or phonenumbers.region_code_for_country_code(parsed.country_code or 0)
        return RealNumber(e164=e164, country=country_clean(country))
    return None


def phone_region(number: str) -> str:
    """The region of an E.164 number, or PROXY_DEFAULT_COUNTRY when it has none."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        region = None
    return region or settings.PROXY_DEFAULT_COUNTRY


def msisdn_normalize(raw: str) -> str:
    """A number as staff type it ("447700900123", "+44 7700 900123") → E.164 with '+'."""
    digits = re.sub(r"[\s\-().]", "", raw.strip())
    candidate = digits if digits.startswith("+") else f"+{digits}"
    if not is_e164(candidate):
        raise ApplicationError(
            f"{raw!r} is not a phone number in international format (e.g. +447700900123).",
            code="invalid_number",
        )
    return candidate
