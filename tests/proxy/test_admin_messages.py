"""Smoke tests of the message admin and its retry action (the Retry button: test_admin_retry)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from smsproxy.proxy.models import InboundPart, Message, MessagePart
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:proxy_message_changelist")


def test_changelist_with_filters_and_search(admin_client: Client) -> None:
    message = MessageFactory.create(text="Meet at the gate", status=Message.Status.FAILED)
    MessagePart.objects.create(message=message, vonage_message_id="0C0000001234567B")
    MessageFactory.create(text="Something else")

    assert admin_client.get(CHANGELIST).status_code == HTTPStatus.OK
    for query in (
        {"direction__exact": "outbound"},
        {"status__exact": "failed"},
        {"purpose__exact": "conversation"},
    ):
        assert admin_client.get(CHANGELIST, query).status_code == HTTPStatus.OK
    for term in ("gate", "0C0000001234567B"):
        response = admin_client.get(CHANGELIST, {"q": term})
        assert response.status_code == HTTPStatus.OK
        assert list(response.context["cl"].result_list) == [message]


def test_detail_page_is_read_only_with_parts(admin_client: Client) -> None:
    inbound = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED
    )
    InboundPart.objects.create(
        vonage_message_id="0B01",
        sender=inbound.sender,
        recipient=inbound.recipient,
        concat_ref="1",
        concat_total=2,
        concat_part=1,
        text="half",
        message=inbound,
    )
    outbound = MessageFactory.create(forwarded_from=inbound, status=Message.Status.SENT)
    MessagePart.objects.create(message=outbound, vonage_message_id="0C01")

    for message, part_id in ((inbound, "0B01"), (outbound, "0C01")):
        url = reverse("admin:proxy_message_change", args=[message.pk])
        response = admin_client.get(url)
        assert response.status_code == HTTPStatus.OK
        assert part_id in response.content.decode()
        # Read-only: a POST changes nothing.
        admin_client.post(url, {"text": "rewritten"})
        message.refresh_from_db()
        assert message.text != "rewritten"


def test_no_adding_or_deleting(admin_client: Client) -> None:
    message = MessageFactory.create()

    assert admin_client.get(reverse("admin:proxy_message_add")).status_code == HTTPStatus.FORBIDDEN
    response = admin_client.post(
        reverse("admin:proxy_message_delete", args=[message.pk]), {"post": "yes"}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert Message.objects.filter(pk=message.pk).exists()


def test_retry_action_queues_failed_messages_and_logs_it(admin_client: Client) -> None:
    failed = MessageFactory.create(status=Message.Status.FAILED, attempts=8, error_code="9")
    delivered = MessageFactory.create(status=Message.Status.DELIVERED)

    response = admin_client.post(
        CHANGELIST,
        {"action": "retry", "_selected_action": [failed.pk, delivered.pk]},
        follow=True,
    )

    assert response.status_code == HTTPStatus.OK
    notices = [str(m) for m in response.context["messages"]]
    assert "Queued 1 message(s) again." in notices
    assert any("Only failed outbound messages" in notice for notice in notices)
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error_code) == ("queued", 0, "")
    assert delivered.status == Message.Status.DELIVERED
    entry = LogEntry.objects.get(object_id=str(failed.pk))
    assert entry.action_flag == CHANGE
    assert entry.get_change_message() == (
        "Retried: status failed → queued, attempts 8 → 0, error code 9 → -."
    )


def test_retry_needs_the_change_permission(client: Client, django_user_model: Any) -> None:
    viewer = django_user_model.objects.create_user(
        "viewer", password="pw-for-tests-1", is_staff=True
    )
    viewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    client.force_login(viewer)
    failed = MessageFactory.create(status=Message.Status.FAILED)

    response = client.get(CHANGELIST)
    assert response.status_code == HTTPStatus.OK
    assert response.context["action_form"] is None  # no action offered to a viewer

    client.post(CHANGELIST, {"action": "retry", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED


def test_retry_with_the_change_permission(client: Client, django_user_model: Any) -> None:
    """Not only superusers: staff granted "change message" may retry (and only that)."""
    operator = django_user_model.objects.create_user(
        "operator", password="pw-for-tests-1", is_staff=True
    )
    operator.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_message", "change_message"])
    )
    client.force_login(operator)
    failed = MessageFactory.create(status=Message.Status.FAILED)

    page = client.get(CHANGELIST)
    assert [name for name, _label in page.context["action_form"].fields["action"].choices] == [
        "",
        "retry",
    ]
    client.post(CHANGELIST, {"action": "retry", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.status == Message.Status.QUEUED
    # Still read-only: the permission grants the retry, not editing.
    client.post(reverse("admin:proxy_message_change", args=[failed.pk]), {"text": "rewritten"})
    failed.refresh_from_db()
    assert failed.text != "rewritten"


def test_the_message_page_shows_what_the_intercept_hook_decided(admin_client) -> None:
    """Issue 12: the message log shows whether the marketplace passed, replaced or blocked it."""
    message = MessageFactory.create(intercept="replaced")

    page = admin_client.get(f"/admin/proxy/message/{message.pk}/change/")
    listing = admin_client.get("/admin/proxy/message/", {"intercept__exact": "replaced"})

    assert page.status_code == 200 and "Intercept" in page.content.decode()
    assert listing.status_code == 200 and f"/admin/proxy/message/{message.pk}/" in (
        listing.content.decode()
    )
