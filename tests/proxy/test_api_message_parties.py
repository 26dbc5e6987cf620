"""The API names who a message is from and to, links a forward to the text it carries, and
shows a proxy number's country (DESIGN.md §7 fields, issue 14 item 11)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from smsproxy.gateway.webhooks import InboundSms
from smsproxy.proxy.models import Message
from smsproxy.proxy.services.inbound import inbound_receive
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, person, proxy_of

pytestmark = pytest.mark.django_db

ALICE, BOB = person(1), person(2)


def messages_url(conversation: Any) -> str:
    return reverse("conversation-messages", kwargs={"public_id": str(conversation.public_id)})


def detail_url(conversation: Any) -> str:
    return reverse("conversation-detail", kwargs={"public_id": str(conversation.public_id)})


def test_messages_name_both_sides_and_a_forward_names_its_inbound(api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(ALICE, BOB)
    inbound_receive(
        sms=InboundSms(
            vonage_message_id="0A0000000000000A1",
            sender=ALICE,
            recipient=proxy_of(conversation, ALICE).msisdn,
            text="Running late",
        )
    )
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    forward = Message.objects.get(forwarded_from=inbound)

    results = api_client.get(messages_url(conversation)).json()["results"]

    rows = {
        item["id"]: (item["purpose"], item["sender_name"], item["recipient_name"])
        for item in results
    }
    intros = [item for item in results if item["purpose"] == "intro"]
    assert sorted((i["sender_name"], i["recipient_name"]) for i in intros) == [
        (None, "Alice"),
        (None, "Bob"),
    ]
    assert rows[inbound.pk] == ("conversation", "Alice", "Bob")
    assert rows[forward.pk] == ("conversation", "Alice", "Bob")
    by_id = {item["id"]: item for item in results}
    assert by_id[forward.pk]["forwarded_from"] == inbound.pk
    assert by_id[forward.pk]["sender"] == proxy_of(conversation, BOB).msisdn  # not Alice's
    assert by_id[inbound.pk]["forwarded_from"] is None


def test_a_system_message_is_from_nobody_to_its_participant(api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(ALICE, BOB)

    response = api_client.post(
        messages_url(conversation), {"to": BOB, "text": "Your driver is here"}, format="json"
    )

    assert response.status_code == HTTPStatus.CREATED
    data = response.json()
    assert (data["purpose"], data["sender_name"], data["recipient_name"]) == ("system", None, "Bob")
    assert data["forwarded_from"] is None


def test_a_proxy_number_from_another_country_is_flagged_and_logged(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a US number is free: GB participants get it (rule 3 prefers, not requires, GB).
    VirtualNumberFactory.create(msisdn="+15550100001", country="US")

    with caplog.at_level(logging.WARNING, logger="smsproxy.proxy.services.assignment"):
        conversation = open_between(ALICE, BOB)

    participants = api_client.get(detail_url(conversation)).json()["participants"]
    assert [(p["country"], p["proxy_country"]) for p in participants] == [
        ("GB", "US"),
        ("GB", "US"),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "was given +15550100001 from US: no free GB number in the pool" in warnings[0]
    assert ALICE not in " ".join(warnings)  # real numbers are masked in logs


def test_a_proxy_number_of_the_own_country_is_not_logged(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    VirtualNumberFactory.create_batch(2)

    with caplog.at_level(logging.WARNING, logger="smsproxy.proxy.services.assignment"):
        conversation = open_between(ALICE, BOB)

    participants = api_client.get(detail_url(conversation)).json()["participants"]
    assert {p["proxy_country"] for p in participants} == {"GB"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
