"""Phone numbers: the one place that parses, normalises and formats them (STYLE: E.164 inside).

Every number stored or passed between layers is E.164 with a leading '+' ("+447700900123").
Text from people (the API, the admin, commands) is read here; Vonage's wire format (digits
without '+') is converted inside the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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
    return _phone_parse(number.strip(), (default_country or settings.PROXY_DEFAULT_COUNTRY).upper())


@lru_cache(maxsize=4096)
def _phone_parse(text: str, region: str) -> RealNumber | None:
    # Cached: a pure function of its arguments, and the same people's numbers come back on
    # every conversation they open (the result is immutable).
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


# Blocks reserved for fiction, never assigned to a subscriber (Ofcom's drama range for mobiles,
# and 555-010x, used in US fiction and demos). `phonenumbers` classes them as no type at all;
# the sandbox and the tests use them as people's mobiles.
FICTITIOUS_RANGES = ((447700900000, 447700900999), (15550100000, 15550100999))
# Number types no person's phone has: premium rate, toll free, shared cost, pagers, voicemail,
# VoIP, personal and universal access numbers, landlines. Texting the pool from one of them must
# not make us send it anything (rule 6), and no conversation can use one. A number of no known
# type is not refused: `phonenumbers`' metadata lags new mobile ranges, and the fictitious
# ranges have no type either.
_NOT_SMS_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.VOIP,
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
        phonenumbers.PhoneNumberType.PAGER,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.VOICEMAIL,
    }
)
# Non-geographic calling codes (+800, +808, +870, +881, +882, +883, +888, +979): satellite
# phones and international networks charged at premium rates. `phonenumbers` classes some of
# them as mobile, so they are refused by code, whatever their type.
_NON_GEOGRAPHIC_REGION = "001"


def is_fictitious(e164: str) -> bool:
    digits = e164.removeprefix("+")
    return digits.isdigit() and any(
        first <= int(digits) <= last for first, last in FICTITIOUS_RANGES
    )


def phone_receives_sms(e164: str) -> bool:
    """Whether smsproxy may send an SMS to this number: a fictitious one, or a geographic
    number that `phonenumbers` does not class as one of the types no phone has."""
    if is_fictitious(e164):
        return True
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.region_code_for_number(parsed) == _NON_GEOGRAPHIC_REGION:
        return False
    return phonenumbers.number_type(parsed) not in _NOT_SMS_TYPES


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
