"""GET /api/numbers/."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from smsproxy.numbers.api import NumberListApi
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory

pytestmark = pytest.mark.django_db

URL = "/api/numbers/"


def test_route_name() -> None:
    assert reverse("numbers-list") == URL


def test_requires_a_token() -> None:
    response = APIClient().get(URL)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "not_authenticated"


def test_rejects_a_bad_token() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get(URL).status_code == HTTPStatus.UNAUTHORIZED


def test_lists_the_pool(api_client: APIClient) -> None:
    busy = VirtualNumberFactory.create(msisdn="+447700900001", features="SMS,VOICE")
    VirtualNumberFactory.create(msisdn="+447700900002", reserved=True, features="SMS")
    ParticipantFactory.create_batch(2, proxy_number=busy)
    closed = ConversationFactory.create(
        status="closed", closed_at=timezone.now(), close_reason="api"
    )
    ParticipantFactory.create(proxy_number=busy, conversation=closed, active=False)

    response = api_client.get(URL)

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["count"] == 2
    assert body["next"] is None and body["previous"] is None
    assert body["results"] == [
        {
            "msisdn": "+447700900001",
            "country": "GB",
            "type": "mobile-lvn",
            "features": ["SMS", "VOICE"],
            "status": "active",
            "reserved": False,
            "active_participants": 2,
        },
        {
            "msisdn": "+447700900002",
            "country": "GB",
            "type": "mobile-lvn",
            "features": ["SMS"],
            "status": "active",
            "reserved": True,
            "active_participants": 0,
        },
    ]


def test_filters(api_client: APIClient) -> None:
    VirtualNumberFactory.create(msisdn="+447700900001")
    VirtualNumberFactory.create(
        msisdn="+447700900002", status="released", released_at=timezone.now()
    )
    VirtualNumberFactory.create(msisdn="+15550100001", country="US")

    def msisdns(**params: str) -> list[str]:
        response = api_client.get(URL, params)
        assert response.status_code == HTTPStatus.OK
        return [row["msisdn"] for row in response.json()["results"]]

    assert msisdns(status="released") == ["+447700900002"]
    assert msisdns(country="us") == ["+15550100001"]
    assert msisdns(status="active", country="GB") == ["+447700900001"]


@pytest.mark.parametrize(
    ("params", "field"), [({"status": "lost"}, "status"), ({"country": "GBR"}, "country")]
)
def test_bad_filters_are_400(api_client: APIClient, params: dict[str, str], field: str) -> None:
    response = api_client.get(URL, params)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"] == "The request is not valid: see `fields`."  # a query, not a body
    assert field in body["fields"]


def test_paginated(api_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NumberListApi.pagination_class, "page_size", 2)
    for index in range(3):
        VirtualNumberFactory.create(msisdn=f"+44770090000{index}")

    first = api_client.get(URL).json()

    assert first["count"] == 3
    assert len(first["results"]) == 2
    assert first["next"].endswith("?page=2")
    second = api_client.get(first["next"]).json()
    assert [row["msisdn"] for row in second["results"]] == ["+447700900002"]


def test_query_count_does_not_grow_with_the_pool(
    api_client: APIClient, django_assert_num_queries: Any
) -> None:
    for number in VirtualNumberFactory.create_batch(10):
        ParticipantFactory.create(proxy_number=number)

    # token lookup, count, page (with the usage subquery)
    with django_assert_num_queries(3):
        response = api_client.get(URL)

    assert response.status_code == HTTPStatus.OK
    assert all(row["active_participants"] == 1 for row in response.json()["results"])


def test_schema_has_the_endpoint_without_warnings() -> None:
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)

    operation = schema["paths"]["/api/numbers/"]["get"]
    assert {param["name"] for param in operation["parameters"]} == {"status", "country", "page"}
    properties = schema["components"]["schemas"]["PoolNumber"]["properties"]
    assert properties["features"]["type"] == "array"
    assert properties["active_participants"]["type"] == "integer"
    problems = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    assert [problem for problem in problems if "NumberListApi" in problem] == []
