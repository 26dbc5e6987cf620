"""A conversation refused for want of a free number: the API keeps its documented answer
(503 `pool_exhausted`), and the log says why in one line — the country and how many live
conversations the person is in — instead of Django's bare "Service Unavailable"."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import pytest
from rest_framework.test import APIClient

from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.services import writes
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db

LIST_URL = "/api/conversations/"


def pool_exhausted_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == "pool_exhausted"]


@pytest.fixture
def busy() -> str:
    """A person in two live conversations on a pool of two numbers: a third cannot be served."""
    VirtualNumberFactory.create_batch(2, country="GB")
    busy = person(0)
    open_between(busy, person(1))
    open_between(busy, person(2))
    return busy


def test_the_api_answer_is_unchanged_and_the_log_names_country_and_live_count(
    api_client: APIClient, busy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = {
        "participants": [{"number": busy, "name": "Alice"}, {"number": person(3), "name": "Bob"}]
    }

    response = api_client.post(LIST_URL, body, format="json")

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "pool_exhausted"
    assert "Add numbers to the pool" in response.json()["detail"]
    [record] = pool_exhausted_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.country == "GB"  # type: ignore[attr-defined]
    assert record.live_conversations == 2  # type: ignore[attr-defined]
    assert record.real_number == "+44*******500"  # type: ignore[attr-defined]
    message = record.getMessage()
    assert message.startswith("pool_exhausted: ")
    assert "country GB" in message and "in 2 live conversation(s)" in message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert busy not in logged and busy.lstrip("+") not in logged
    # One line for the event: Django's own "Service Unavailable: /api/conversations/" is not.
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_a_failed_rental_on_the_fly_is_logged_the_same_way(
    busy: str, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PROXY_AUTO_PROVISION = True

    def rent_fails(*, country: str) -> None:
        raise ApplicationError(
            "No proxy number is free for this conversation and none could be rented.",
            code="pool_exhausted",
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )

    monkeypatch.setattr(writes, "proxy_number_rent", rent_fails)
    with pytest.raises(ApplicationError) as error:
        open_between(busy, person(3))

    assert error.value.code == "pool_exhausted" and error.value.logged
    [record] = pool_exhausted_records(caplog)
    assert record.live_conversations == 2  # type: ignore[attr-defined]
    assert record.auto_provision is True  # type: ignore[attr-defined]
    assert "none could be rented" in record.getMessage()


def test_other_refusals_are_still_logged_by_django(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = api_client.post(LIST_URL, {"participants": []}, format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == [
        f"Bad Request: {LIST_URL}"
    ]
