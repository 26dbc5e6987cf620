"""The conversations API end to end with APIClient (DESIGN.md §7)."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services import conversations as conversation_services
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.outbox.helpers import statements
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

LIST_URL = reverse("conversation-list")
ALICE = "+447700900501"
BOB = "+447700900502"
NI_BASIC = "https://api.nexmo.com/ni/basic/json"


def person(index: int) -> str:
    return f"+447700900{500 + index:03d}"


def detail_url(public_id: Any) -> str:
    return reverse("conversation-detail", kwargs={"public_id": str(public_id)})


def close_url(public_id: Any) -> str:
    return reverse("conversation-close", kwargs={"public_id": str(public_id)})


def messages_url(public_id: Any) -> str:
    return reverse("conversation-messages", kwargs={"public_id": str(public_id)})


def body(a: str = ALICE, b: str = BOB, **extra: Any) -> dict[str, Any]:
    return {"participants": [{"number": a, "name": "Alice"}, {"number": b, "name": "Bob"}], **extra}


def counts() -> tuple[int, int, int]:
    return (Conversation.objects.count(), Participant.objects.count(), Message.objects.count())


@pytest.fixture
def pool() -> list[Any]:
    return VirtualNumberFactory.create_batch(2)


@pytest.fixture
def vonage(settings: Any) -> None:
    """The real Vonage provider and SDK, with HTTP faked by `mocked_responses`."""
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "s3cr3t-not-real"


def insight_ok(number: str, country: str = "GB") -> dict[str, Any]:
    return {
        "status": 0,
        "status_message": "Success",
        "request_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "international_format_number": number.removeprefix("+"),
        "national_format_number": "07700 900000",
        "country_code": country,
        "country_code_iso3": "GBR",
        "country_name": "United Kingdom",
        "country_prefix": "44",
    }


# --- Create ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alice", "bob"),
    [
        ("+447700900501", "+447700900502"),
        ("447700900501", "447700900502"),
        ("07700 900501", "07700900502"),
    ],
    ids=["e164", "without-plus", "national"],
)
def test_create(api_client: APIClient, pool: list[Any], alice: str, bob: str) -> None:
    response = api_client.post(
        LIST_URL, body(alice, bob, reference="booking-42", ttl=3600), format="json"
    )

    assert response.status_code == HTTPStatus.CREATED, response.json()
    data = response.json()
    assert set(data) == {
        "id",
        "reference",
        "status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "participants",
    }
    assert data["reference"] == "booking-42"
    assert data["status"] == "active"
    assert data["closed_at"] is None
    assert data["expires_at"] is not None
    pool_msisdns = {number.msisdn for number in pool}
    assert [
        (p["name"], p["number"], p["country"], p["proxy_number"] in pool_msisdns)
        for p in data["participants"]
    ] == [("Alice", ALICE, "GB", True), ("Bob", BOB, "GB", True)]
    conversation = Conversation.objects.get(public_id=data["id"])
    assert conversation.messages.filter(purpose="intro", status="queued").count() == 2


def test_create_with_defaults(api_client: APIClient, pool: list[Any]) -> None:
    response = api_client.post(
        LIST_URL, {"participants": [{"number": ALICE}, {"number": BOB}]}, format="json"
    )
    assert response.status_code == HTTPStatus.CREATED, response.json()
    data = response.json()
    assert (data["reference"], data["expires_at"]) == ("", None)
    assert [p["name"] for p in data["participants"]] == ["", ""]
    assert [p["number"] for p in data["participants"]] == [ALICE, BOB]


def test_create_with_an_invalid_number(api_client: APIClient, pool: list[Any]) -> None:
    response = api_client.post(LIST_URL, body(ALICE, "+44 20"), format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "invalid_number"
    assert "participant 2 (Bob)" in data["detail"]
    assert data["fields"] == {"participants": {"1": {"number": ["Not a valid phone number."]}}}
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("bob", "message"),
    [
        ({"name": "Bob"}, "This field is required."),
        ({"name": "Bob", "number": ""}, "This field may not be blank."),
        ({"name": "Bob", "number": None}, "This field may not be null."),
        ({"name": "Bob", "number": "7" * 33}, "Ensure this field has no more than 32 characters."),
    ],
)
def test_create_with_a_missing_or_malformed_number(
    api_client: APIClient, pool: list[Any], bob: dict[str, Any], message: str
) -> None:
    payload = {"participants": [{"number": ALICE, "name": "Alice"}, bob]}
    response = api_client.post(LIST_URL, payload, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "invalid_number"
    assert "participant 2 (Bob)" in data["detail"]
    assert data["fields"] == {"participants": {"1": {"number": [message]}}}
    assert counts() == (0, 0, 0)


def test_create_with_a_phone_number_in_a_name(api_client: APIClient, pool: list[Any]) -> None:
    payload = body()
    payload["participants"][1]["name"] = "Bob 07700 900456"
    response = api_client.post(LIST_URL, payload, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "invalid_participants"
    assert data["fields"] == {"participants": {"1": {"name": ["Must not contain a phone number."]}}}
    assert counts() == (0, 0, 0)


def test_create_with_one_of_our_proxy_numbers(api_client: APIClient, pool: list[Any]) -> None:
    response = api_client.post(LIST_URL, body(pool[0].msisdn, BOB), format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "invalid_number"
    assert "participant 1 (Alice)" in data["detail"]
    assert list(data["fields"]["participants"]) == ["0"]
    assert counts() == (0, 0, 0)


def test_create_with_a_number_insight_rejects(
    api_client: APIClient, pool: list[Any], vonage: None, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(NI_BASIC, json=insight_ok(ALICE))
    mocked_responses.get(
        NI_BASIC,
        json={"status": 3, "status_message": "Invalid request :: Not valid number format"},
    )

    response = api_client.post(LIST_URL, body(), format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "invalid_number"
    assert counts() == (0, 0, 0)


def test_create_uses_insight_for_the_canonical_number_and_country(
    api_client: APIClient, pool: list[Any], vonage: None, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(NI_BASIC, json=insight_ok(ALICE, country="GB"))
    mocked_responses.get(NI_BASIC, json=insight_ok(BOB, country="GG"))

    response = api_client.post(LIST_URL, body("07700 900501", "447700900502"), format="json")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    participants = response.json()["participants"]
    assert [(p["number"], p["country"]) for p in participants] == [(ALICE, "GB"), (BOB, "GG")]
    queries = [
        dict(parse_qsl(urlsplit(call.request.url or "").query)) for call in mocked_responses.calls
    ]
    # Asked in international format, without a country.
    assert [query["number"] for query in queries] == ["447700900501", "447700900502"]
    assert all("country" not in query for query in queries)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"type": "about:blank", "title": "Internal Server Error"}},
        {"json": {"status": 1, "status_message": "Throttled"}},
        {"json": {"status": 9, "status_message": "Partner quota exceeded"}},
    ],
    ids=["http-500", "status-1-throttled", "status-9-quota"],
)
def test_create_falls_back_to_the_local_parse_when_insight_is_unavailable(
    api_client: APIClient,
    pool: list[Any],
    vonage: None,
    mocked_responses: responses.RequestsMock,
    failure: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocked_responses.get(NI_BASIC, **failure)

    response = api_client.post(LIST_URL, body("07700 900501", BOB), format="json")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    participants = response.json()["participants"]
    assert [(p["number"], p["country"]) for p in participants] == [(ALICE, "GB"), (BOB, "GB")]
    assert len(mocked_responses.calls) >= 2  # both numbers were asked about
    assert "using the local parse" in caplog.text
    assert ALICE not in caplog.text  # real numbers are masked in logs


def test_create_keeps_the_local_parse_when_insight_answers_a_malformed_number(
    api_client: APIClient,
    pool: list[Any],
    vonage: None,
    mocked_responses: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocked_responses.get(NI_BASIC, json={**insight_ok(ALICE), "international_format_number": "44"})
    mocked_responses.get(NI_BASIC, json=insight_ok(BOB))

    response = api_client.post(LIST_URL, body("07700 900501", BOB), format="json")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    assert [p["number"] for p in response.json()["participants"]] == [ALICE, BOB]
    assert "Number Insight answered '+44'" in caplog.text


@pytest.mark.parametrize("count", [1, 3])
def test_create_with_one_or_three_participants(
    api_client: APIClient, pool: list[Any], count: int
) -> None:
    participants = [{"number": person(i)} for i in range(count)]
    response = api_client.post(LIST_URL, {"participants": participants}, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "invalid_participants"
    assert counts() == (0, 0, 0)


def test_create_with_the_same_number_twice(api_client: APIClient, pool: list[Any]) -> None:
    response = api_client.post(LIST_URL, body(ALICE, "07700 900501"), format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "invalid_participants"
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"participants": "alice and bob"}, "participants"),
        ({"participants": [{"name": "Alice", "number": ALICE}, {"number": BOB}], "ttl": 0}, "ttl"),
        (body(ttl=0), "ttl"),
        (body(ttl="soon"), "ttl"),
        (body(reference="x" * 201), "reference"),
        ({}, "participants"),
    ],
)
def test_create_with_a_malformed_body(
    api_client: APIClient, pool: list[Any], payload: dict[str, Any], field: str
) -> None:
    response = api_client.post(LIST_URL, payload, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "validation_error"
    assert field in data["fields"]
    assert counts() == (0, 0, 0)


def test_create_with_a_non_json_body(api_client: APIClient, pool: list[Any]) -> None:
    response = api_client.post(LIST_URL, "participants=alice", content_type="text/plain")
    assert response.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert response.json()["code"] == "unsupported_media_type"

    response = api_client.post(LIST_URL, "{not json", content_type="application/json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "malformed_request"
    assert counts() == (0, 0, 0)


def test_create_when_the_pool_is_exhausted(api_client: APIClient, pool: list[Any]) -> None:
    for index in (1, 2):
        open_between(ALICE, person(10 + index))
    before = counts()

    response = api_client.post(LIST_URL, body(), format="json")

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "pool_exhausted"
    assert counts() == before


def test_every_endpoint_needs_a_token(pool: list[Any]) -> None:
    conversation = open_between(ALICE, BOB)
    anonymous = APIClient()
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token not-a-valid-token")
    for client in (anonymous, wrong):
        for method, url in [
            ("get", LIST_URL),
            ("post", LIST_URL),
            ("get", detail_url(conversation.public_id)),
            ("post", close_url(conversation.public_id)),
            ("get", messages_url(conversation.public_id)),
        ]:
            response = getattr(client, method)(url, body(), format="json")
            assert response.status_code == HTTPStatus.UNAUTHORIZED, (method, url)
            assert response.json()["code"] in {"not_authenticated", "authentication_failed"}
    assert Conversation.objects.count() == 1
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE


# --- List, detail ---------------------------------------------------------------------------------


def test_list_is_paginated_newest_first(api_client: APIClient, pool: list[Any]) -> None:
    first = open_between(person(0), person(1))
    second = open_between(person(2), person(3))

    response = api_client.get(LIST_URL)

    assert response.status_code == HTTPStatus.OK
    data = response.json()
    assert set(data) == {"count", "next", "previous", "results"}
    assert data["count"] == 2
    assert [item["id"] for item in data["results"]] == [
        str(second.public_id),
        str(first.public_id),
    ]


def test_list_filters(api_client: APIClient, pool: list[Any]) -> None:
    live = open_between(person(0), person(1), reference="booking-1")
    closed = open_between(person(0), person(2), reference="booking-2")
    expired = open_between(person(3), person(4), reference="booking-1", ttl=60)
    api_client.post(close_url(closed.public_id))
    Conversation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    def ids(**params: str) -> set[str]:
        response = api_client.get(LIST_URL, params)
        assert response.status_code == HTTPStatus.OK, response.json()
        return {item["id"] for item in response.json()["results"]}

    assert ids(status="active") == {str(live.public_id)}
    # An expired conversation is not live, even before the sweep closes it.
    assert ids(status="closed") == {str(closed.public_id), str(expired.public_id)}
    assert ids(reference="booking-1") == {str(live.public_id), str(expired.public_id)}
    assert ids(number="07700 900500") == {str(live.public_id), str(closed.public_id)}
    assert ids(number="447700900502") == {str(closed.public_id)}
    assert ids(number=person(4), status="closed") == {str(expired.public_id)}
    assert ids(number="+447700900999") == set()


@pytest.mark.parametrize("params", [{"status": "open"}, {"number": "not a number"}])
def test_list_rejects_a_bad_filter(
    api_client: APIClient, pool: list[Any], params: dict[str, str]
) -> None:
    response = api_client.get(LIST_URL, params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "validation_error"
    assert data["detail"] == "The filters are not valid."
    assert set(data["fields"]) == set(params)


def test_empty_filters_are_ignored(api_client: APIClient, pool: list[Any]) -> None:
    open_between(ALICE, BOB)
    response = api_client.get(LIST_URL, {"status": "", "reference": "", "number": ""})
    assert response.status_code == HTTPStatus.OK, response.json()
    assert response.json()["count"] == 1


def test_the_api_is_throttled_per_user(
    api_client: APIClient, pool: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rate is read once at import (DRF), so the throttle class is patched; its counters
    # live in the cache, cleared on both sides so no other test sees them.
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/minute"})
    cache.clear()
    try:
        for _ in range(3):
            assert api_client.get(LIST_URL).status_code == HTTPStatus.OK
        response = api_client.get(LIST_URL)
        assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
        assert response.json()["code"] == "throttled"
        assert int(response.headers["Retry-After"]) > 0
        refused = api_client.post(LIST_URL, body(), format="json")
        assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
        assert counts() == (0, 0, 0)
    finally:
        cache.clear()


def test_detail(api_client: APIClient, pool: list[Any]) -> None:
    conversation = open_between(ALICE, BOB, reference="booking-7")

    response = api_client.get(detail_url(conversation.public_id))

    assert response.status_code == HTTPStatus.OK
    data = response.json()
    assert data["id"] == str(conversation.public_id)
    assert data["reference"] == "booking-7"
    assert data["status"] == "active"
    alice, bob = conversation.participants.order_by("id")
    assert data["participants"] == [
        {
            "name": "Alice",
            "number": ALICE,
            "country": "GB",
            "proxy_number": alice.proxy_number.msisdn,
            "proxy_country": "GB",
        },
        {
            "name": "Bob",
            "number": BOB,
            "country": "GB",
            "proxy_number": bob.proxy_number.msisdn,
            "proxy_country": "GB",
        },
    ]


def test_detail_of_an_expired_conversation_reports_it_closed(
    api_client: APIClient, pool: list[Any]
) -> None:
    conversation = open_between(ALICE, BOB, ttl=60)
    expires_at = timezone.now() - timedelta(seconds=5)
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=expires_at)

    data = api_client.get(detail_url(conversation.public_id)).json()

    assert data["status"] == "closed"
    assert data["closed_at"] == data["expires_at"]


@pytest.mark.parametrize("public_id", ["4b0a6c55-56a5-4a8e-9c44-3f0f8e0c9a11", "not-a-uuid"])
def test_unknown_conversation_is_404(api_client: APIClient, public_id: str) -> None:
    for response in (
        api_client.get(detail_url(public_id)),
        api_client.post(close_url(public_id)),
        api_client.get(messages_url(public_id)),
    ):
        assert response.status_code == HTTPStatus.NOT_FOUND
        assert response.json()["code"] == "not_found"


# --- Close ----------------------------------------------------------------------------------------


def test_close_twice(api_client: APIClient, pool: list[Any]) -> None:
    conversation = open_between(ALICE, BOB)

    first = api_client.post(close_url(conversation.public_id))
    assert first.status_code == HTTPStatus.OK
    data = first.json()
    assert data["status"] == "closed"
    assert data["closed_at"] is not None
    conversation.refresh_from_db()
    assert conversation.close_reason == Conversation.CloseReason.API
    assert not conversation.participants.filter(active=True).exists()

    second = api_client.post(close_url(conversation.public_id))
    assert second.status_code == HTTPStatus.OK
    assert second.json() == data


def test_close_frees_the_number_for_a_new_conversation(
    api_client: APIClient, pool: list[Any]
) -> None:
    first = open_between(ALICE, person(10))
    open_between(ALICE, person(11))
    assert (
        api_client.post(LIST_URL, body(), format="json").status_code
        == HTTPStatus.SERVICE_UNAVAILABLE
    )

    api_client.post(close_url(first.public_id))

    assert api_client.post(LIST_URL, body(), format="json").status_code == HTTPStatus.CREATED


class _LockConflict(Exception):
    """Stands for psycopg's DeadlockDetected: what Django's OperationalError wraps."""

    sqlstate = "40P01"


@pytest.mark.parametrize(("failures", "status"), [(1, HTTPStatus.OK), (99, HTTPStatus.CONFLICT)])
def test_close_after_a_deadlock(
    api_client: APIClient,
    pool: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    failures: int,
    status: HTTPStatus,
) -> None:
    """PostgreSQL aborting the close for a lock conflict is retried, never a 500 (the real
    deadlock runs in test_conversations_concurrency)."""
    conversation = open_between(ALICE, BOB)
    deactivate = conversation_services.participants_deactivate
    attempts: list[int] = []

    def deactivate_or_deadlock(**kwargs: Any) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise OperationalError("deadlock detected") from _LockConflict()
        deactivate(**kwargs)

    monkeypatch.setattr(conversation_services, "participants_deactivate", deactivate_or_deadlock)

    response = api_client.post(close_url(conversation.public_id))

    assert response.status_code == status, response.json()
    conversation.refresh_from_db()
    if status == HTTPStatus.OK:
        assert response.json()["status"] == "closed"
        assert conversation.status == Conversation.Status.CLOSED
    else:
        assert response.json()["code"] == "close_conflict"
        assert conversation.status == Conversation.Status.ACTIVE


# --- Messages -------------------------------------------------------------------------------------


def test_messages_list(api_client: APIClient, pool: list[Any]) -> None:
    conversation = open_between(ALICE, BOB)
    alice = conversation.participants.get(real_number=ALICE)
    inbound = MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED,
        sender=ALICE,
        recipient=alice.proxy_number.msisdn,
        text="Running 5 minutes late",
        vonage_message_id="0A0000000123ABCD1",
    )
    other = open_between(person(20), person(21))

    response = api_client.get(messages_url(conversation.public_id))

    assert response.status_code == HTTPStatus.OK
    data = response.json()
    assert data["count"] == 3
    assert set(data) == {"count", "next", "previous", "results"}
    results = data["results"]
    assert all(
        set(item)
        == {
            "id",
            "direction",
            "purpose",
            "sender",
            "recipient",
            "sender_name",
            "recipient_name",
            "forwarded_from",
            "text",
            "status",
            "error_code",
            "created_at",
            "updated_at",
        }
        for item in results
    )
    assert [(item["direction"], item["purpose"], item["status"]) for item in results] == [
        ("outbound", "intro", "queued"),
        ("outbound", "intro", "queued"),
        ("inbound", "conversation", "received"),
    ]
    assert results[2]["id"] == inbound.pk
    assert results[2]["text"] == "Running 5 minutes late"
    assert not {item["id"] for item in results} & set(other.messages.values_list("id", flat=True))


# --- Query counts ---------------------------------------------------------------------------------


def test_list_query_count_does_not_grow_with_conversations(
    api_client: APIClient, pool: list[Any], django_assert_num_queries: Any
) -> None:
    open_between(person(0), person(1))
    # token, count, page, participants with their proxy numbers
    with django_assert_num_queries(4):
        assert len(api_client.get(LIST_URL).json()["results"]) == 1
    for index in range(1, 6):
        open_between(person(2 * index), person(2 * index + 1))
    with django_assert_num_queries(4):
        assert len(api_client.get(LIST_URL).json()["results"]) == 6
    with django_assert_num_queries(4):
        assert len(api_client.get(LIST_URL, {"number": person(0)}).json()["results"]) == 1


def test_messages_query_count_does_not_grow_with_messages(
    api_client: APIClient, pool: list[Any], django_assert_num_queries: Any
) -> None:
    conversation = open_between(ALICE, BOB)
    url = messages_url(conversation.public_id)
    # token, conversation, its participants (the names), count, page
    with django_assert_num_queries(5):
        assert len(api_client.get(url).json()["results"]) == 2
    MessageFactory.create_batch(10, conversation=conversation)
    with django_assert_num_queries(5):
        assert len(api_client.get(url).json()["results"]) == 12


def test_detail_query_count(
    api_client: APIClient, pool: list[Any], django_assert_num_queries: Any
) -> None:
    conversation = open_between(ALICE, BOB)
    # token, conversation, participants with their proxy numbers
    with django_assert_num_queries(3):
        api_client.get(detail_url(conversation.public_id))


def test_a_create_runs_its_statements_and_answers_what_it_wrote(
    api_client: APIClient, pool: list[Any], django_assert_num_queries: Any
) -> None:
    """Opening a conversation: the token; the pool check; the conversation; per participant,
    the candidate (chosen and locked at once) and its insert; the history; both loads; both
    intro SMS. No savepoint, nothing read back. On PostgreSQL each participant's candidate and
    insert are one statement (the first's with the conversation), and the history, the loads
    and the intro SMS one more: 5 statements, not 10."""
    open_between(person(0), person(1))  # history and load to rank by
    with CaptureQueriesContext(connection) as captured:
        response = api_client.post(LIST_URL, body(person(0), person(2)), format="json")
    assert response.status_code == HTTPStatus.CREATED, response.json()

    run = statements(captured)
    kinds = [sql.split()[0] for sql in run]
    if connection.vendor == "postgresql":
        expected = [
            "SELECT",  # the token and its user
            "SELECT",  # our numbers among the participants'
            "WITH",  # the conversation, the first participant's candidate, inserted
            "WITH",  # the second's
            "WITH",  # the history of use (upsert), both numbers' loads, both intro SMS
        ]
    else:
        expected = ["SELECT", "SELECT", "INSERT", "SELECT", "INSERT", "SELECT", "INSERT"]
        expected += ["INSERT", "UPDATE", "INSERT"]  # history, loads, intro SMS
    assert kinds == expected, "\n".join(run)
    # One atomic block (a savepoint here, inside the test's transaction): none per participant.
    savepoints = [q for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) <= 1
    conversation = Conversation.objects.get(public_id=response.json()["id"])
    with django_assert_num_queries(3):  # what a GET answers: the same body
        assert api_client.get(detail_url(conversation.public_id)).json() == response.json()
    assert Message.objects.filter(conversation=conversation, purpose="intro").count() == 2


def test_the_conversation_body_says_why_it_is_closed(
    api_client: APIClient, pool: list[Any]
) -> None:
    """DESIGN §7: `close_reason` (api, expired, staff), null while the conversation is live."""
    created = api_client.post(LIST_URL, body(), format="json").json()
    assert created["close_reason"] is None

    closed = api_client.post(f"{LIST_URL}{created['id']}/close/").json()
    assert closed["close_reason"] == "api"

    other = api_client.post(LIST_URL, body(ALICE, "+447700900503"), format="json").json()
    Conversation.objects.filter(public_id=other["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    # Past its expiry, not yet swept: closed, because it expired.
    assert api_client.get(f"{LIST_URL}{other['id']}/").json()["close_reason"] == "expired"
