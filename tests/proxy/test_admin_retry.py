"""The message page: Vonage's ids, error codes in words, and Retry behind a confirmation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from smsproxy.common.privacy import mask_number
from smsproxy.proxy.models import Message, MessagePart
from tests.factories import MessageFactory
from tests.proxy.admin_users import OPERATOR, VIEWER, staff_login

pytestmark = pytest.mark.django_db

RECIPIENT = "+447700900777"


@pytest.fixture
def failed() -> Message:
    """A two-part forward: part 1 delivered, part 2 failed by its receipt (err-code 6)."""
    message = MessageFactory.create(
        status=Message.Status.FAILED,
        recipient=RECIPIENT,
        attempts=1,
        error_code="6",
        error_text="Delivery receipt for part 0C0000000002: failed.",
    )
    MessagePart.objects.create(
        message=message, vonage_message_id="0C0000000001", status="delivered"
    )
    MessagePart.objects.create(
        message=message, vonage_message_id="0C0000000002", status="failed", error_code="6"
    )
    return message


def change_url(message: Message) -> str:
    return reverse("admin:proxy_message_change", args=[message.pk])


def retry_url(message: Message) -> str:
    return reverse("admin:proxy_message_retry", args=[message.pk])


def test_the_page_shows_every_vonage_id_and_what_the_error_means(
    admin_client: Client, failed: Message
) -> None:
    content = admin_client.get(change_url(failed)).content.decode()

    assert "Vonage message id(s)" in content
    ids = content[content.index("Vonage message id(s)") :]
    assert "<code>0C0000000001</code> (delivered)" in ids
    assert "<code>0C0000000002</code> (failed)" in ids
    # A receipt's err-code 6 is an anti-spam rejection (a send's status 6 would be another).
    assert "Anti-spam rejection" in content
    assert "Invalid message" not in content


def test_the_list_shows_the_code_with_its_meaning_in_a_tooltip(
    admin_client: Client, failed: Message
) -> None:
    content = admin_client.get(reverse("admin:proxy_message_changelist")).content.decode()
    assert '<span title="Anti-spam rejection: a carrier' in content


def test_a_refused_send_shows_the_sms_api_status_in_words(admin_client: Client) -> None:
    message = MessageFactory.create(
        status=Message.Status.FAILED, error_code="9", error_text="Quota Exceeded - rejected"
    )
    content = admin_client.get(change_url(message)).content.decode()
    assert "Partner quota violation: not enough credit to send" in content


def test_retry_asks_then_queues_again_and_writes_the_history(
    admin_client: Client, admin_user: Any, failed: Message
) -> None:
    assert f'<a href="{retry_url(failed)}">Retry</a>' in (
        admin_client.get(change_url(failed)).content.decode()
    )

    confirmation = admin_client.get(retry_url(failed))
    assert confirmation.status_code == HTTPStatus.OK
    assert "are you sure?" in confirmation.content.decode()
    assert ">Confirm</button>" in confirmation.content.decode()
    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED

    response = admin_client.post(retry_url(failed), {"confirm": "yes"}, follow=True)

    assert "Queued the message again." in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error_code) == ("queued", 0, "")
    assert not failed.parts.filter(superseded=False).exists()  # the new send's ids come next
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.object_id) == (admin_user.pk, str(failed.pk))
    assert entry.change_message == (
        "Retried: status failed → queued, attempts 1 → 0, error code 6 → -."
    )


@pytest.mark.parametrize(
    "status", [Message.Status.DELIVERED, Message.Status.QUEUED, Message.Status.SENT]
)
def test_only_a_failed_outbound_message_offers_retry(admin_client: Client, status: str) -> None:
    message = MessageFactory.create(status=status)
    assert retry_url(message) not in admin_client.get(change_url(message)).content.decode()

    response = admin_client.post(retry_url(message), {"confirm": "yes"}, follow=True)

    assert "Only failed outbound messages can be retried" in response.content.decode()
    message.refresh_from_db()
    assert message.status == status
    assert not LogEntry.objects.exists()


def test_an_inbound_message_offers_no_retry(admin_client: Client) -> None:
    inbound = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.REJECTED
    )
    assert retry_url(inbound) not in admin_client.get(change_url(inbound)).content.decode()
    admin_client.post(retry_url(inbound), {"confirm": "yes"})
    inbound.refresh_from_db()
    assert inbound.status == Message.Status.REJECTED


def test_staff_without_real_numbers_see_the_recipient_masked(
    client: Client, django_user_model: Any, failed: Message
) -> None:
    staff_login(client, django_user_model, codenames=OPERATOR)

    for url in (change_url(failed), retry_url(failed)):
        content = client.get(url).content.decode()
        assert RECIPIENT not in content and mask_number(RECIPIENT) in content, url

    client.post(retry_url(failed), {"confirm": "yes"})
    failed.refresh_from_db()
    assert failed.status == Message.Status.QUEUED


@pytest.mark.parametrize("support", [False, True], ids=["viewer", "support group"])
def test_view_only_staff_cannot_retry(
    client: Client, django_user_model: Any, failed: Message, support: bool
) -> None:
    staff_login(client, django_user_model, codenames=[] if support else VIEWER, support=support)

    page = client.get(change_url(failed))
    assert page.status_code == HTTPStatus.OK
    assert retry_url(failed) not in page.content.decode()
    assert client.get(retry_url(failed)).status_code == HTTPStatus.FORBIDDEN
    assert client.post(retry_url(failed), {"confirm": "yes"}).status_code == HTTPStatus.FORBIDDEN

    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED
    assert not LogEntry.objects.exists()
