"""SMS text encoding: which texts fit GSM-7, and how many parts a text is split into.

Carriers and Vonage split a long text the way GSM 03.38/03.40 prescribes: a single GSM-7 SMS
holds 160 septets, a part of a concatenated one 153 (the user data header takes the rest);
a UCS-2 SMS holds 70 UTF-16 code units, a concatenated part 67. A GSM-7 extension character
(`€`, `[`, ...) costs two septets and is never split from its escape; a UTF-16 surrogate pair is
never split either.
"""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE_PART = 160
GSM7_MULTI_PART = 153
UCS2_SINGLE_PART = 70
UCS2_MULTI_PART = 67


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM 03.38 basic or extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def _units(text: str, gsm7: bool) -> list[int]:
    """The cost of each character: septets for GSM-7, UTF-16 code units for UCS-2."""
    if gsm7:
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def split_parts(text: str) -> list[str]:
    """The parts a text is sent as (one for an empty or short text)."""
    gsm7 = is_gsm7(text)
    units = _units(text, gsm7)
    single, multi = (
        (GSM7_SINGLE_PART, GSM7_MULTI_PART) if gsm7 else (UCS2_SINGLE_PART, UCS2_MULTI_PART)
    )
    if sum(units) <= single:
        return [text]
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(units):
        if used + cost > multi:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return parts
