"""Releases and syncs racing conversation closes and reassignments on PostgreSQL.

Closing or reassigning a conversation locks the conversation, then its numbers (their load).
Releases and syncs lock only number rows and leave the conversations to the proxy's
`numbers_retired` handler, which closes each in its own transaction in that same order: no
deadlock, no server error, and the pool never holds as rented a number the provider cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.rental import number_release
from smsproxy.numbers.services.sync import numbers_sync
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.services.reassign import participant_reassign
from smsproxy.sandbox.models import SandboxNumber
from tests.factories import ParticipantFactory, VirtualNumberFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs DATABASE_URL pointing at PostgreSQL"
    ),
]

ROUNDS = 30


def _rent_at_sandbox(*numbers: VirtualNumber) -> None:
    for number in numbers:
        SandboxNumber.objects.create(
            msisdn=number.msisdn,
            country=number.country,
            type=number.number_type,
            features=number.features,
            rented_at=timezone.now(),
        )


def _one_round(token: str) -> list[str]:
    """Five operations at once on one small pool; returns what escaped from any of them."""
    doomed, gone, spare, other = VirtualNumberFactory.create_batch(4)
    # The account still rents all but `gone`: the sync retires it, the release cancels `doomed`.
    _rent_at_sandbox(doomed, spare, other)
    closing = ParticipantFactory.create(proxy_number=doomed).conversation
    ParticipantFactory.create(conversation=closing, proxy_number=spare)
    moving = ParticipantFactory.create(proxy_number=doomed)
    ParticipantFactory.create(conversation=moving.conversation, proxy_number=gone)
    onto_doomed = ParticipantFactory.create(proxy_number=other)
    ParticipantFactory.create(conversation=onto_doomed.conversation, proxy_number=gone)

    def api_close() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        url = reverse("conversation-close", args=[closing.public_id])
        response = client.post(url)
        if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise AssertionError(f"API close answered {response.status_code}")

    def sync() -> None:
        result = numbers_sync()
        if result.failed:
            raise AssertionError(f"sync lost conflicts: {result.failed}")

    operations: list[Callable[[], Any]] = [
        api_close,
        lambda: participant_reassign(participant=moving, proxy_number=spare),
        lambda: participant_reassign(participant=onto_doomed, proxy_number=doomed),
        lambda: number_release(number=doomed, force=True),
        sync,
    ]
    start = threading.Barrier(len(operations), timeout=20)
    escaped: list[str] = []
    lock = threading.Lock()

    def run(operation: Callable[[], Any]) -> None:
        try:
            start.wait()
            operation()
        except ApplicationError:
            pass  # a clear refusal (closed meanwhile, number released meanwhile) is fine
        except Exception as exc:  # a deadlock, a server error: what this test is about
            with lock:
                escaped.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(operation,)) for operation in operations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return escaped


def _assert_pool_tells_the_truth() -> None:
    rented = set(SandboxNumber.objects.filter(cancelled_at=None).values_list("msisdn", flat=True))
    active = set(
        VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE).values_list(
            "msisdn", flat=True
        )
    )
    assert active <= rented, f"active in the pool but not rented: {active - rented}"
    on_released = Participant.objects.filter(
        active=True, proxy_number__status=VirtualNumber.Status.RELEASED
    )
    assert not on_released.exists(), list(on_released.values("pk", "proxy_number__msisdn"))
    loads = VirtualNumber.objects.annotate(
        live=Count("participants", filter=Q(participants__active=True))
    ).values_list("msisdn", "assigned_participants", "live")
    assert all(stored == live for _msisdn, stored, live in loads), list(loads)


def test_releases_and_syncs_racing_closes_and_reassignments(api_user: Any) -> None:
    token = Token.objects.create(user=api_user).key
    escaped: list[str] = []
    for _round in range(ROUNDS):
        escaped += _one_round(token)
        _assert_pool_tells_the_truth()
        Message.objects.all().delete()
        Participant.objects.all().delete()
        Conversation.objects.all().delete()
        VirtualNumber.objects.all().delete()
        SandboxNumber.objects.all().delete()
    assert escaped == []
