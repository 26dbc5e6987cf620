"""The events API (`GET /api/events/`), the admin list with its resend action, the system
check of the secret, and the dispatchers keeping events apart from SMS."""

from __future__ import annotations

from http import HTTPStatus

import pytest
import responses
from django.conf import settings as django_settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from smsproxy.proxy.events import dispatch
from smsproxy.proxy.events.record import EventType, event_record
from smsproxy.proxy.events.webhook import webhook_settings_check
from smsproxy.proxy.models import Event, Message
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.services.inbound import inbound_receive
from tests.factories import ConversationFactory
from tests.proxy.events.conftest import EVENTS_URL
from tests.proxy.fixtures import SMS_SEND_URL, conversation_make, vonage_answer
from tests.proxy.test_inbound import sms

pytestmark = pytest.mark.django_db


def written(n: int) -> Event:
    event = event_record(type=EventType.CONVERSATION_CLOSED, conversation=None, data={"n": n})
    assert event is not None
    return event


def test_the_api_lists_events_newest_last_with_their_status(events_on, api_client) -> None:
    first, second, third = written(1), written(2), written(3)
    Event.objects.filter(pk=first.pk).update(status=Event.Status.DELIVERED)

    response = api_client.get("/api/events/")

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["count"] == 3
    assert [item["id"] for item in body["results"]] == [
        first.public_id,
        second.public_id,
        third.public_id,
    ]
    assert body["results"][0]["status"] == "delivered"
    assert body["results"][1]["data"] == {"n": 2}
    assert body["results"][1]["type"] == "conversation.closed"


def test_the_api_replays_after_an_event(events_on, api_client) -> None:
    first, second, third = written(1), written(2), written(3)

    response = api_client.get("/api/events/", {"after": first.public_id})

    assert [item["id"] for item in response.json()["results"]] == [
        second.public_id,
        third.public_id,
    ]
    unknown = api_client.get("/api/events/", {"after": "evt_nope"})
    assert unknown.status_code == HTTPStatus.BAD_REQUEST
    assert unknown.json()["code"] == "unknown_event"


def test_the_api_needs_a_token(client) -> None:
    assert client.get("/api/events/").status_code == HTTPStatus.UNAUTHORIZED


def test_the_admin_lists_and_searches_events(events_on, admin_client) -> None:
    conversation = ConversationFactory.create(reference="booking-99")
    event_record(type=EventType.CONVERSATION_CLOSED, conversation=conversation, data={})
    written(2)
    url = reverse("admin:proxy_event_changelist")

    assert admin_client.get(url).status_code == HTTPStatus.OK
    found = admin_client.get(url, {"q": "booking-99"})
    assert found.status_code == HTTPStatus.OK
    assert list(found.context["cl"].result_list) == [Event.objects.get(conversation=conversation)]
    filtered = admin_client.get(url, {"status__exact": "pending"})
    assert filtered.context["cl"].result_count == 2
    event = Event.objects.first()
    assert event is not None
    detail = admin_client.get(reverse("admin:proxy_event_change", args=[event.pk]))
    assert detail.status_code == HTTPStatus.OK


def test_resend_needs_the_change_event_permission(events_on, client, django_user_model) -> None:
    event = written(1)
    Event.objects.filter(pk=event.pk).update(status=Event.Status.FAILED, attempts=30)
    staff = django_user_model.objects.create_user("staff", password="pw-for-tests-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(staff)
    url = reverse("admin:proxy_event_changelist")
    action = {"action": "resend", "_selected_action": [event.pk]}

    page = client.get(url)
    assert page.status_code == HTTPStatus.OK
    assert page.context["action_form"] is None  # no action this user may take
    client.post(url, action)
    event.refresh_from_db()
    assert event.status == Event.Status.FAILED

    staff.user_permissions.add(Permission.objects.get(codename="change_event"))
    page = client.get(url)
    assert "resend" in dict(page.context["action_form"].fields["action"].choices)
    client.post(url, action)
    event.refresh_from_db()
    assert event.status == Event.Status.PENDING and event.attempts == 0
    entry = LogEntry.objects.get(object_id=str(event.pk))
    assert (entry.user_id, entry.action_flag, entry.get_change_message()) == (
        staff.pk,
        CHANGE,
        "Resent: status failed → pending, attempts 30 → 0; due now.",
    )


def test_the_secret_is_required_with_either_url(settings) -> None:
    settings.PROXY_EVENTS_URL = EVENTS_URL
    settings.PROXY_EVENTS_SECRET = ""
    assert [error.id for error in webhook_settings_check(None)] == ["smsproxy.E010"]
    settings.PROXY_EVENTS_URL = ""
    settings.PROXY_INTERCEPT_URL = EVENTS_URL
    assert [error.id for error in webhook_settings_check(None)] == ["smsproxy.E010"]
    settings.PROXY_EVENTS_SECRET = "whsec_"
    assert [error.id for error in webhook_settings_check(None)] == ["smsproxy.E011"]
    settings.PROXY_INTERCEPT_URL = ""
    assert webhook_settings_check(None) == []


def test_events_run_on_a_queue_of_their_own() -> None:
    route = django_settings.CELERY_TASK_ROUTES[dispatch.DELIVER_EVENTS_TASK]
    assert route == {"queue": dispatch.EVENTS_QUEUE}
    assert dispatch.EVENTS_QUEUE != "celery"


def test_a_failing_events_endpoint_does_not_delay_an_sms(
    events_on, settings, mocked_responses: responses.RequestsMock
) -> None:
    """The SMS path only writes events; the endpoint is called by the events dispatcher."""
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.SMS_RATE_LIMIT = 0
    mocked_responses.add(responses.POST, EVENTS_URL, status=HTTPStatus.SERVICE_UNAVAILABLE)
    conversation_make()
    forward = inbound_receive(sms=sms("Hi")).forward
    assert forward is not None
    mocked_responses.add(
        responses.POST, SMS_SEND_URL, json=vonage_answer("sms_send_ok", CLIENT_REF=str(forward.pk))
    )

    assert message_deliver(message_id=forward.pk).outcome == Outcome.SENT
    assert [call.request.url for call in mocked_responses.calls] == [SMS_SEND_URL]
    assert Event.objects.filter(type="message.status").exists()

    call_command("run_outbox", "--once")
    assert Message.objects.get(pk=forward.pk).status == Message.Status.SENT
    assert Event.objects.filter(status=Event.Status.PENDING).count() == 2  # retried later
    assert mocked_responses.calls[-1].request.url == EVENTS_URL
