"""Vonage's SMS error codes in words: a send's status and a receipt's err-code differ."""

from __future__ import annotations

import pytest

from smsproxy.gateway.error_codes import RECEIPT_ERRORS, SEND_STATUSES, sms_error_description


@pytest.mark.parametrize(
    ("code", "receipt", "meaning"),
    [
        ("1", False, "Throttled"),
        ("9", False, "Partner quota violation"),
        ("29", False, "Non-whitelisted destination"),
        ("timeout", False, "did not answer in time"),
        ("1", True, "Unknown"),
        ("6", True, "Anti-spam rejection"),
        ("14", True, "Number blocked by carrier"),
        (" 99 ", True, "General error"),
    ],
)
def test_a_documented_code_is_described(code: str, receipt: bool, meaning: str) -> None:
    assert meaning in sms_error_description(code=code, receipt=receipt)


def test_the_same_number_means_different_things_in_each_space() -> None:
    assert sms_error_description(code="6", receipt=False).startswith("Invalid message")
    assert sms_error_description(code="6", receipt=True).startswith("Anti-spam rejection")


@pytest.mark.parametrize(
    ("code", "receipt"), [("", False), ("0", True), ("blocked", False), ("77", True)]
)
def test_an_undocumented_code_has_no_description(code: str, receipt: bool) -> None:
    assert sms_error_description(code=code, receipt=receipt) == ""


def test_every_code_vonage_md_lists_is_in_the_tables() -> None:
    """VONAGE.md: the SMS statuses and the receipt err-codes it names."""
    send = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "11", "12", "14", "15", "22", "23"}
    assert send | {"29", "33"} <= SEND_STATUSES.keys()
    assert {"1", "2", "3", "4", "6", "9", "14", "99"} <= RECEIPT_ERRORS.keys()
