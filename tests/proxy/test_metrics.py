"""`/metrics`: the token, the Prometheus text format, the gauges and the counters."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from smsproxy.proxy.models import Conversation, Event, Message
from smsproxy.proxy.outbox.deliver import message_deliver
from tests.factories import (
    ConversationFactory,
    MessageFactory,
    ParticipantFactory,
    VirtualNumberFactory,
)
from tests.proxy.fixtures import INBOUND_URL, conversation_make, payload, send_webhook

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_is_not_found_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer x").status_code == (
        HTTPStatus.NOT_FOUND
    )


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"Token {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
def test_metrics_refuses_a_missing_or_wrong_token(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"smsproxy_" not in response.content


def test_metrics_gauges_from_the_database(client, token):
    VirtualNumberFactory.create_batch(2, country="GB")
    VirtualNumberFactory.create(country="GB", reserved=True)
    VirtualNumberFactory.create(msisdn="+15550100001", country="US")
    ParticipantFactory.create()  # one more GB number, and a live conversation
    ConversationFactory.create(
        status=Conversation.Status.CLOSED,
        closed_at=timezone.now(),
        close_reason=Conversation.CloseReason.API,
    )
    old = MessageFactory.create(status=Message.Status.QUEUED)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    MessageFactory.create(status=Message.Status.QUEUED)
    MessageFactory.create(status=Message.Status.DELIVERED)
    Event.objects.create(type="conversation.closed", data={})
    Event.objects.create(type="conversation.closed", data={}, status=Event.Status.DELIVERED)

    samples = scrape(client)

    assert samples[("smsproxy_outbox_queued", ())] == 2
    assert 85 <= samples[("smsproxy_outbox_oldest_queued_age_seconds", ())] < 120
    assert samples[("smsproxy_pool_free_numbers", (("country", "GB"),))] == 3
    assert samples[("smsproxy_pool_free_numbers", (("country", "US"),))] == 1
    assert samples[("smsproxy_live_conversations", ())] == 1
    assert samples[("smsproxy_events_pending", ())] == 1


def test_metrics_oldest_age_is_zero_with_an_empty_outbox(client, token):
    samples = scrape(client)
    assert samples[("smsproxy_outbox_queued", ())] == 0
    assert samples[("smsproxy_outbox_oldest_queued_age_seconds", ())] == 0


def test_inbound_webhooks_counted_by_outcome(client, token):
    def count(outcome: str) -> float:
        return scrape(client).get(("smsproxy_inbound_sms_total", (("outcome", outcome),)), 0.0)

    routed, duplicate = count("routed"), count("duplicate")
    conversation_make()
    params = payload("inbound_sms_text")
    assert send_webhook(client, INBOUND_URL, params, "form").status_code == HTTPStatus.OK
    assert send_webhook(client, INBOUND_URL, params, "form").status_code == HTTPStatus.OK

    assert count("routed") == routed + 1
    assert count("duplicate") == duplicate + 1


def test_sends_counted_by_outcome(client, token):
    def count(outcome: str) -> float:
        return scrape(client).get(("smsproxy_sends_total", (("outcome", outcome),)), 0.0)

    failed, skipped = count("failed"), count("skipped")
    # Its sender is none of our numbers: refused where every SMS leaves (failed).
    message = MessageFactory.create(status=Message.Status.QUEUED, sender="+447700900499")
    message_deliver(message_id=message.pk)
    message_deliver(message_id=message.pk)  # no longer queued: skipped

    assert count("failed") == failed + 1
    assert count("skipped") == skipped + 1


def test_metrics_scrape_takes_a_fixed_number_of_queries(
    client, token, django_assert_max_num_queries
):
    for index in range(5):
        ParticipantFactory.create(proxy_number=VirtualNumberFactory.create())
        MessageFactory.create(status=Message.Status.QUEUED)
        Event.objects.create(type="conversation.closed", data={"n": index})
    with django_assert_max_num_queries(4):
        scrape(client)
