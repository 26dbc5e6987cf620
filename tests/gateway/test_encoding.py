"""GSM-7 detection and the split of long texts into parts."""

from __future__ import annotations

import pytest

from smsproxy.gateway.encoding import is_gsm7, split_parts


@pytest.mark.parametrize(
    ("text", "gsm7"),
    [
        ("Hello, world! 0123456789", True),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r", True),
        ("^{}\\[~]|€\f", True),  # extension table
        ("", True),
        ("café", True),  # é is in the GSM-7 table
        ("crêpe", False),  # ê is not
        ("naïve", False),
        ("Привет", False),
        ("👋", False),
        ("`backtick`", False),
        ("\x1b", False),  # the escape itself is not text
    ],
)
def test_is_gsm7(text: str, gsm7: bool) -> None:
    assert is_gsm7(text) is gsm7


def test_a_short_text_is_one_part() -> None:
    assert split_parts("x" * 160) == ["x" * 160]
    assert split_parts("") == [""]


def test_a_long_gsm_text_is_split_in_153_septets() -> None:
    parts = split_parts("x" * 400)
    assert [len(part) for part in parts] == [153, 153, 94]
    assert "".join(parts) == "x" * 400


def test_an_extension_character_is_never_split_from_its_escape() -> None:
    text = "x" * 152 + "€" + "y" * 10
    parts = split_parts(text)
    assert parts == ["x" * 152, "€" + "y" * 10]


def test_a_long_unicode_text_is_split_in_67_code_units() -> None:
    parts = split_parts("я" * 140)
    assert [len(part) for part in parts] == [67, 67, 6]


def test_a_surrogate_pair_is_never_split() -> None:
    text = "я" * 66 + "👋" + "я" * 10
    parts = split_parts(text)
    assert parts == ["я" * 66, "👋" + "я" * 10]
