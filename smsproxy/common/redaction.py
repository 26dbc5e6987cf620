"""Rule 9's redaction: phone numbers inside forwarded texts are replaced with a placeholder."""

from __future__ import annotations

import re

import phonenumbers

REDACTED_NUMBER = "[number removed]"

# Seven or more digits, single spaces, dots or dashes allowed between them: what is left of a
# phone number that `phonenumbers` did not recognise (unusual grouping, a foreign format).
_DIGIT_RUN_RE = re.compile(r"\+?\d(?:[ .\-]?\d){6,}")
# Digit runs that are not phone numbers, though both passes would take them for one:
# "10.30 - 11.45", "9:00-17:30" (a time range), "24.11.2026", "24-11-26", "2026-11-24" (a date).
_TIME_RANGE_RE = re.compile(
    r"(?:[01]?\d|2[0-4])[.:][0-5]\d\s*[-\u2013]\s*(?:[01]?\d|2[0-4])[.:][0-5]\d"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DATE_RE = re.compile(
    rf"{_DAY}([.\-]){_MONTH}\1(?:\d{{4}}|\d{{2}})|{_MONTH}([.\-]){_DAY}\2(?:\d{{4}}|\d{{2}})"
    rf"|\d{{4}}-{_MONTH}-{_DAY}"
)
# An amount after a currency sign ("£1 250 000", "$ 2,500,000.50") is not a number to call —
# only when grouped as amounts are (thousands), so that "£ 07700 900123" is still redacted.
_CURRENCY_SIGNS = "£$€¥₹₽₺₩₪₦₱฿"
_AMOUNT_RE = re.compile(r"[1-9]\d{0,2}([ ,.])\d{3}(?:\1\d{3})*(?:[.,]\d{1,2})?")


# Fewer digits than this in a whole text, and nothing in it is redacted (both passes below
# need seven).
_MIN_DIGITS = 7


def text_may_hold_a_number(text: str) -> bool:
    """Whether `text` has enough digits for `text_redact_numbers` to change anything: most
    texts do not, and then neither `phonenumbers`' matcher nor the sender's region is needed.
    `str.isdigit` counts every digit either pass could see (`\\d` and `phonenumbers` alike)."""
    return sum(map(str.isdigit, text)) >= _MIN_DIGITS


def text_redact_numbers(*, text: str, region: str) -> str:
    """Rule 9: replace every phone number in `text` with REDACTED_NUMBER.

    `phonenumbers` finds numbers in any common notation (international or national for
    `region`, with spaces, dashes, brackets); leniency POSSIBLE on purpose — a fictitious or
    unassigned number is still someone's way off the platform. A run of seven or more digits
    it did not recognise goes too (so does a 7+ digit order number: a local phone number looks
    just like one, and privacy wins). Kept: numbers of fewer than seven digits (house numbers,
    codes, "5 minutes", a 6-digit order number), time ranges ("10.30-11.45"), dates
    ("24.11.2026", "2026-11-24") and amounts after a currency sign ("£1 250 000").
    """
    if not text_may_hold_a_number(text):
        return text
    spans = []
    for match in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.POSSIBLE
    ):
        digits = sum(char.isdigit() for char in match.raw_string)
        if digits < _MIN_DIGITS or _not_a_phone_number(text, match.start, match.raw_string):
            continue
        spans.append((match.start, match.end))
    # Joined once, not spliced match by match: splicing copies the text for every number found,
    # quadratic in a text full of numbers.
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], REDACTED_NUMBER]
        last = end
    text = "".join([*pieces, text[last:]])

    def redact_run(run: re.Match[str]) -> str:
        if _not_a_phone_number(run.string, run.start(), run.group()):
            return run.group()
        return REDACTED_NUMBER

    return _DIGIT_RUN_RE.sub(redact_run, text)


def _not_a_phone_number(text: str, start: int, candidate: str) -> bool:
    """A time range, a date, or an amount after a currency sign: kept as written."""
    candidate = candidate.strip()
    if _TIME_RANGE_RE.fullmatch(candidate) or _DATE_RE.fullmatch(candidate):
        return True
    before = text[:start].rstrip()
    return bool(before) and before[-1] in _CURRENCY_SIGNS and bool(_AMOUNT_RE.fullmatch(candidate))
