"""The intercept hook (DESIGN.md §11), asked by the delivery worker before a forward is sent."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qs

import pytest
import requests
import responses
from standardwebhooks import Webhook

from smsproxy.proxy.models import Event, Message
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.services.inbound import inbound_receive
from tests.proxy.events.conftest import INTERCEPT_URL, SECRET
from tests.proxy.fixtures import SMS_SEND_URL, conversation_make, vonage_answer
from tests.proxy.test_inbound import sms

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(settings, events_on, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    settings.PROXY_INTERCEPT_URL = INTERCEPT_URL
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.VONAGE_REST_HOST = "rest.nexmo.com"
    settings.SMS_RATE_LIMIT = 0
    return mocked_responses


def forward_of(text: str) -> tuple[Message, Message]:
    conversation_make()
    result = inbound_receive(sms=sms(text))
    assert result.message is not None and result.forward is not None
    return result.message, result.forward


def reference_of(inbound: Message) -> dict[str, str]:
    conversation = inbound.conversation
    assert conversation is not None
    return {"id": str(conversation.public_id), "reference": conversation.reference}


def vonage_accepts(hook: responses.RequestsMock, forward: Message) -> None:
    hook.add(
        responses.POST, SMS_SEND_URL, json=vonage_answer("sms_send_ok", CLIENT_REF=str(forward.pk))
    )


def sent_texts(hook: responses.RequestsMock) -> list[str]:
    return [
        parse_qs(str(call.request.body))["text"][0]
        for call in hook.calls
        if str(call.request.url).startswith(SMS_SEND_URL)
    ]


def test_a_2xx_forwards_and_the_question_is_signed(hook) -> None:
    hook.add(responses.POST, INTERCEPT_URL, status=HTTPStatus.NO_CONTENT)
    inbound, forward = forward_of("See you at 5")
    vonage_accepts(hook, forward)

    assert not hook.calls  # never asked in the webhook request
    assert message_deliver(message_id=forward.pk).outcome == Outcome.SENT

    question = hook.calls[0].request
    body = Webhook(SECRET).verify(question.body, dict(question.headers))
    assert body == {
        "conversation": reference_of(inbound),
        "from": "Alice",
        "text": "See you at 5",
    }
    assert sent_texts(hook) == ["See you at 5"]
    forward.refresh_from_db()
    assert forward.intercept == Message.Intercept.PASSED


def test_a_2xx_with_text_forwards_that_text_redacted(hook) -> None:
    hook.add(responses.POST, INTERCEPT_URL, json={"text": "Call me on 07700 900123 please"})
    _, forward = forward_of("Call me maybe")
    vonage_accepts(hook, forward)

    message_deliver(message_id=forward.pk)

    [text] = sent_texts(hook)
    assert "900123" not in text and text.startswith("Call me on ")
    forward.refresh_from_db()
    assert forward.intercept == Message.Intercept.REPLACED and forward.text == text


def test_a_403_blocks_the_text(hook) -> None:
    hook.add(responses.POST, INTERCEPT_URL, status=HTTPStatus.FORBIDDEN)
    inbound, forward = forward_of("My number is 07700 900123")

    result = message_deliver(message_id=forward.pk)

    assert result.outcome == Outcome.BLOCKED
    assert sent_texts(hook) == []
    inbound.refresh_from_db()
    forward.refresh_from_db()
    assert inbound.status == Message.Status.BLOCKED
    assert forward.status == Message.Status.BLOCKED and forward.error_code == "blocked"
    assert forward.intercept == Message.Intercept.BLOCKED
    blocked = Event.objects.get(type="message.blocked")
    assert blocked.data["id"] == inbound.pk and blocked.data["status"] == "blocked"
    assert blocked.data["conversation"] == reference_of(inbound)
    assert message_deliver(message_id=forward.pk).outcome == Outcome.SKIPPED


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("slow"), requests.ConnectionError("refused"), HTTPStatus.BAD_GATEWAY],
)
def test_an_unavailable_hook_forwards_by_default(hook, failure) -> None:
    if isinstance(failure, HTTPStatus):
        hook.add(responses.POST, INTERCEPT_URL, status=failure)
    else:
        hook.add(responses.POST, INTERCEPT_URL, body=failure)
    _, forward = forward_of("On my way")
    vonage_accepts(hook, forward)

    assert message_deliver(message_id=forward.pk).outcome == Outcome.SENT

    assert sent_texts(hook) == ["On my way"]
    forward.refresh_from_db()
    assert forward.intercept == Message.Intercept.ERROR_FORWARDED


def test_an_unavailable_hook_holds_with_hold_and_is_asked_again(hook, settings) -> None:
    settings.PROXY_INTERCEPT_FAILURE = "hold"
    hook.add(responses.POST, INTERCEPT_URL, body=requests.ReadTimeout("slow"))
    _, forward = forward_of("On my way")

    result = message_deliver(message_id=forward.pk)

    assert result.outcome == Outcome.RETRY
    forward.refresh_from_db()
    assert forward.status == Message.Status.QUEUED and forward.next_attempt_at is not None
    assert forward.intercept == Message.Intercept.HELD
    assert forward.error_code == "intercept_unavailable"
    assert sent_texts(hook) == []

    hook.replace(responses.POST, INTERCEPT_URL, status=HTTPStatus.OK)
    vonage_accepts(hook, forward)
    Message.objects.filter(pk=forward.pk).update(next_attempt_at=None)
    assert message_deliver(message_id=forward.pk).outcome == Outcome.SENT
    assert sent_texts(hook) == ["On my way"]
    intercept_calls = [c for c in hook.calls if c.request.url == INTERCEPT_URL]
    assert len(intercept_calls) == 2


def test_a_held_forward_fails_when_its_attempts_are_used(hook, settings) -> None:
    settings.PROXY_INTERCEPT_FAILURE = "hold"
    hook.add(responses.POST, INTERCEPT_URL, status=HTTPStatus.INTERNAL_SERVER_ERROR)
    _, forward = forward_of("On my way")
    Message.objects.filter(pk=forward.pk).update(max_attempts=1)

    assert message_deliver(message_id=forward.pk).outcome == Outcome.FAILED
    forward.refresh_from_db()
    assert forward.status == Message.Status.FAILED
    assert forward.error_code == "intercept_unavailable"


def test_no_hook_no_question(settings, mocked_responses) -> None:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.SMS_RATE_LIMIT = 0
    _, forward = forward_of("Hi")
    vonage_accepts(mocked_responses, forward)

    assert message_deliver(message_id=forward.pk).outcome == Outcome.SENT
    assert [call.request.url for call in mocked_responses.calls] == [SMS_SEND_URL]
    forward.refresh_from_db()
    assert forward.intercept == ""
