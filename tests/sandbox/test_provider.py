"""The sandbox provider: behaves like Vonage where callers can tell, state in the database."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from smsproxy.gateway.base import (
    CLIENT_REF_MAX_LENGTH,
    InvalidNumberError,
    NumberInsight,
    NumberNotOwnedError,
    NumberUnavailableError,
    OwnedNumber,
    PermanentProviderError,
)
from smsproxy.sandbox.models import SandboxMessage, SandboxNumber
from smsproxy.sandbox.provider import SandboxProvider

from .conftest import CALLBACK, send

pytestmark = pytest.mark.django_db

# --- numbers ------------------------------------------------------------------------------------


def test_search_offers_drama_range_numbers(sandbox: SandboxProvider) -> None:
    gb = sandbox.search_numbers(country="gb", size=3)
    us = sandbox.search_numbers(country="US", features=("SMS", "VOICE"), size=2)

    assert [number.msisdn for number in gb] == ["+447700900000", "+447700900001", "+447700900002"]
    assert {(n.country, n.type, n.features) for n in gb} == {("GB", "mobile-lvn", ("SMS", "VOICE"))}
    assert gb[0].monthly_cost == Decimal("1.00")
    assert [number.msisdn for number in us] == ["+15550100000", "+15550100001"]


def test_search_honours_the_pattern_anywhere_in_the_number(sandbox: SandboxProvider) -> None:
    found = sandbox.search_numbers(country="GB", pattern="99", size=100)

    assert [n.msisdn for n in found][:3] == ["+447700900099", "+447700900199", "+447700900299"]
    assert all("99" in n.msisdn for n in found)
    assert len(found) == 19  # x99 (10) and 99x (10), 999 counted once


def test_search_pages_like_vonage(sandbox: SandboxProvider) -> None:
    pages = [sandbox.search_numbers(country="GB", size=100, index=index) for index in (1, 2, 10)]

    assert [len(page) for page in pages] == [100, 100, 100]
    assert pages[1][0].msisdn == "+447700900100"
    assert pages[2][-1].msisdn == "+447700900999"
    assert sandbox.search_numbers(country="GB", size=100, index=11) == []
    assert len(sandbox.search_numbers(country="GB", size=500)) == 100  # Vonage's largest page


@pytest.mark.parametrize(
    "criteria",
    [
        {"country": "FR"},
        {"country": "GB", "type": "landline"},
        {"country": "GB", "features": ("MMS",)},
        {"country": "GB", "pattern": "1234567"},
    ],
)
def test_search_without_matches_is_empty(sandbox: SandboxProvider, criteria: Any) -> None:
    assert sandbox.search_numbers(**criteria) == []


def test_buy_configure_list_and_cancel(sandbox: SandboxProvider) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900005")
    sandbox.buy_number(country="US", msisdn="+15550100042")
    sandbox.configure_number(
        country="GB", msisdn="+447700900005", inbound_url="https://proxy.example.com/in/"
    )

    assert sandbox.list_owned_numbers() == [
        OwnedNumber("+15550100042", "US", "mobile-lvn", ("SMS", "VOICE"), ""),
        OwnedNumber(
            "+447700900005", "GB", "mobile-lvn", ("SMS", "VOICE"), "https://proxy.example.com/in/"
        ),
    ]
    assert [n.msisdn for n in sandbox.list_owned_numbers(country="gb")] == ["+447700900005"]

    sandbox.cancel_number(country="GB", msisdn="+447700900005")

    assert [n.msisdn for n in sandbox.list_owned_numbers()] == ["+15550100042"]
    number = SandboxNumber.objects.get(msisdn="+447700900005")
    assert number.cancelled_at is not None
    assert number.inbound_url == ""


def test_a_rented_number_is_no_longer_offered(sandbox: SandboxProvider) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900000")

    offered = [n.msisdn for n in sandbox.search_numbers(country="GB", size=2)]

    assert offered == ["+447700900001", "+447700900002"]


def test_buying_a_number_twice_fails_like_vonage(sandbox: SandboxProvider) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900007")

    with pytest.raises(NumberUnavailableError) as caught:
        sandbox.buy_number(country="GB", msisdn="+447700900007")

    assert (caught.value.code, caught.value.http_status) == ("420", 420)
    assert not caught.value.transient
    assert SandboxNumber.objects.count() == 1


@pytest.mark.parametrize(
    ("country", "msisdn"),
    [("GB", "+447911123456"), ("US", "+447700900001"), ("GB", "+447700901000")],
    ids=["real-number", "wrong-country", "outside-range"],
)
def test_buying_a_number_not_offered_fails(
    sandbox: SandboxProvider, country: str, msisdn: str
) -> None:
    with pytest.raises(NumberUnavailableError):
        sandbox.buy_number(country=country, msisdn=msisdn)
    assert not SandboxNumber.objects.exists()


def test_a_cancelled_number_can_be_bought_again(sandbox: SandboxProvider) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900003")
    sandbox.configure_number(country="GB", msisdn="+447700900003", inbound_url="https://a.example/")
    sandbox.cancel_number(country="GB", msisdn="+447700900003")

    sandbox.buy_number(country="GB", msisdn="+447700900003")

    assert sandbox.list_owned_numbers() == [
        OwnedNumber("+447700900003", "GB", "mobile-lvn", ("SMS", "VOICE"), "")
    ]


@pytest.mark.parametrize("action", ["configure", "cancel"])
def test_update_or_cancel_of_a_number_not_rented_fails(
    sandbox: SandboxProvider, action: str
) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900001")
    sandbox.cancel_number(country="GB", msisdn="+447700900001")

    for msisdn in ("+447700900001", "+447700900002"):  # cancelled, never rented
        with pytest.raises(NumberNotOwnedError):
            if action == "configure":
                sandbox.configure_number(
                    country="GB", msisdn=msisdn, inbound_url="https://proxy.example.com/in/"
                )
            else:
                sandbox.cancel_number(country="GB", msisdn=msisdn)


# --- Number Insight -----------------------------------------------------------------------------


GB_DRAMA = NumberInsight("+447700900123", "GB")
US_REAL = NumberInsight("+14155552671", "US")


@pytest.mark.parametrize(
    ("number", "country", "expected"),
    [
        ("+447700900123", "", GB_DRAMA),
        ("447700900123", "", GB_DRAMA),
        ("07700 900123", "gb", GB_DRAMA),
        ("+15550100123", "", NumberInsight("+15550100123", "US")),
        ("+14155552671", "", US_REAL),
        ("(415) 555-2671", "US", US_REAL),
        ("+33612345678", "", NumberInsight("+33612345678", "FR")),
    ],
)
def test_insight_of_valid_numbers(
    sandbox: SandboxProvider, number: str, country: str, expected: NumberInsight
) -> None:
    assert sandbox.insight_basic(number=number, country=country) == expected


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+441234", ""),  # too short
        ("+15550199999", ""),  # 555 outside the drama block: not a valid number
        ("07700 900123", ""),  # national format without a country
        ("not a number", "GB"),
        ("+447700900123", "US"),  # the country contradicts the prefix
    ],
)
def test_insight_of_invalid_numbers(sandbox: SandboxProvider, number: str, country: str) -> None:
    with pytest.raises(InvalidNumberError) as caught:
        sandbox.insight_basic(number=number, country=country)
    assert caught.value.code == "3"


# --- SMS ----------------------------------------------------------------------------------------


def test_send_stores_and_logs_the_sms_once(
    sandbox: SandboxProvider, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsproxy.sandbox.provider")

    result = send(sandbox, "Hi Bob, I'm outside")

    assert len(result.parts) == 1
    assert result.message_ids[0].startswith("SANDBOX-")
    message = SandboxMessage.objects.get()
    assert (message.sender, message.recipient, message.text) == (
        "+447700900001",
        "+447700901234",
        "Hi Bob, I'm outside",
    )
    assert (message.client_ref, message.callback_url, message.encoding) == ("17", CALLBACK, "text")
    assert message.message_ids == result.message_ids
    line = "[sandbox SMS] +447700900001 → +447700901234: Hi Bob, I'm outside"
    logged = [r.getMessage() for r in caplog.records if r.name == "smsproxy.sandbox.provider"]
    assert logged == [line]
    # The console handler shows the log line; printing it as well showed it twice.
    assert line not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "parts", "encoding"),
    [
        ("x" * 160, 1, "text"),
        ("x" * 161, 2, "text"),
        ("x" * 306, 2, "text"),
        ("x" * 307, 3, "text"),
        ("€" * 80, 1, "text"),  # extension characters cost two septets
        ("€" * 81, 2, "text"),
        ("я" * 70, 1, "unicode"),
        ("я" * 71, 2, "unicode"),
        ("я" * 134, 2, "unicode"),
        ("я" * 135, 3, "unicode"),
    ],
)
def test_send_splits_like_vonage(
    sandbox: SandboxProvider, text: str, parts: int, encoding: str
) -> None:
    result = send(sandbox, text)

    assert len(result.parts) == parts
    assert len(set(result.message_ids)) == parts
    message = SandboxMessage.objects.get()
    assert message.encoding == encoding
    assert message.message_ids == result.message_ids


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"text": ""}, "2"),
        ({"text": "hi", "recipient": "+12"}, "3"),
        ({"text": "hi", "client_ref": "x" * (CLIENT_REF_MAX_LENGTH + 1)}, "client-ref"),
    ],
)
def test_send_refuses_what_vonage_refuses(
    sandbox: SandboxProvider, arguments: dict[str, str], code: str
) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        send(sandbox, **arguments)
    assert caught.value.code == code
    assert not SandboxMessage.objects.exists()


def test_the_sandbox_offers_only_numbers_the_service_knows_as_fictitious() -> None:
    """The sandbox's numbers are people's too in demos: sending to them must be allowed."""
    from smsproxy.common.phone import FICTITIOUS_RANGES
    from smsproxy.sandbox.provider import DRAMA_RANGES

    assert {(block.first, block.last) for block in DRAMA_RANGES} == set(FICTITIOUS_RANGES)
