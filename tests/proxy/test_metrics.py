"""`/metrics`: the token, the Prometheus text format, the gauges and the counters."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
import responses
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from smsproxy.proxy.models import Conversation, Event, Message
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from tests.factories import (
    ConversationFactory,
    MessageFactory,
    ParticipantFactory,
    VirtualNumberFactory,
)
from tests.proxy.fixtures import (
    INBOUND_URL,
    RECEIPT_URL,
    conversation_make,
    payload,
    send_webhook,
)
from tests.proxy.outbox.helpers import answer_ok, answer_status, queued

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def vonage(settings, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.SMS_RATE_LIMIT = 0
    return mocked_responses


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


def test_sends_counted_by_outcome_and_vonage_status(client, token):
    def count(outcome: str, status: str = "none") -> float:
        key = ("smsproxy_sends_total", (("outcome", outcome), ("status", status)))
        return scrape(client).get(key, 0.0)

    failed, skipped = count("failed"), count("skipped")
    # Its sender is none of our numbers: refused where every SMS leaves (failed, Vonage not asked).
    message = MessageFactory.create(status=Message.Status.QUEUED, sender="+447700900499")
    message_deliver(message_id=message.pk)
    message_deliver(message_id=message.pk)  # no longer queued: skipped

    assert count("failed") == failed + 1
    assert count("skipped") == skipped + 1


def test_vonage_answers_counted_with_their_status_and_throttles_counted(
    client, token, vonage: responses.RequestsMock
):
    def count(name: str, **labels: str) -> float:
        return scrape(client).get((name, tuple(sorted(labels.items()))), 0.0)

    before = {
        "sent": count("smsproxy_sends_total", outcome="sent", status="0"),
        "throttled": count("smsproxy_sends_total", outcome="retry", status="1"),
        "barred": count("smsproxy_sends_total", outcome="failed", status="7"),
        "throttles": count("smsproxy_throttles_total"),
    }
    throttled, barred, accepted = queued(), queued(), queued()
    answer_status(vonage, "1", "Throughput Rate Exceeded")
    assert message_deliver(message_id=throttled.pk).outcome == Outcome.RETRY
    answer_status(vonage, "7", "Number barred")
    assert message_deliver(message_id=barred.pk).outcome == Outcome.FAILED
    answer_ok(vonage, accepted)
    assert message_deliver(message_id=accepted.pk).outcome == Outcome.SENT

    assert count("smsproxy_sends_total", outcome="sent", status="0") == before["sent"] + 1
    assert count("smsproxy_sends_total", outcome="retry", status="1") == before["throttled"] + 1
    assert count("smsproxy_sends_total", outcome="failed", status="7") == before["barred"] + 1
    assert count("smsproxy_throttles_total") == before["throttles"] + 1


def test_webhook_latency_observed_by_webhook_and_status(client, token, settings):
    def observed(webhook: str, status: str) -> float:
        key = (
            "smsproxy_webhook_duration_seconds_count",
            (("status", status), ("webhook", webhook)),
        )
        return scrape(client).get(key, 0.0)

    ok, refused = observed("inbound-sms", "200"), observed("inbound-sms", "401")
    receipts = observed("delivery-receipt", "200")
    assert send_webhook(client, INBOUND_URL, payload("inbound_sms_text"), "get").status_code == 200
    assert client.get(RECEIPT_URL, payload("delivery_receipt_delivered")).status_code == 200
    settings.VONAGE_SIGNATURE_SECRET = "a-secret-the-webhook-does-not-sign-with"
    assert client.get(INBOUND_URL, payload("inbound_sms_text")).status_code == 401

    assert observed("inbound-sms", "200") == ok + 1
    assert observed("inbound-sms", "401") == refused + 1
    assert observed("delivery-receipt", "200") == receipts + 1
    samples = scrape(client)
    bucket = (
        "smsproxy_webhook_duration_seconds_bucket",
        (("le", "+Inf"), ("status", "200"), ("webhook", "inbound-sms")),
    )
    assert samples[bucket] == ok + 1


def test_metrics_scrape_takes_a_fixed_number_of_queries(
    client, token, django_assert_max_num_queries
):
    for index in range(5):
        ParticipantFactory.create(proxy_number=VirtualNumberFactory.create())
        MessageFactory.create(status=Message.Status.QUEUED)
        Event.objects.create(type="conversation.closed", data={"n": index})
    with django_assert_max_num_queries(4):
        scrape(client)
