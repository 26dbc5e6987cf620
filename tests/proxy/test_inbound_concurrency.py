"""Races that only a real database shows: concurrent duplicate webhooks, parts and claims.

PostgreSQL only (DATABASE_URL): SQLite runs one writer at a time, so it has no such race.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from smsproxy.gateway.webhooks import InboundSms
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.services.inbound import Outcome, inbound_receive
from tests.factories import MessageFactory
from tests.proxy.fixtures import ALICE, ALICE_PROXY, conversation_end, conversation_make

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"),
]


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released at the same instant; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


def sms(message_id: str, **extra: Any) -> InboundSms:
    return InboundSms(
        vonage_message_id=message_id, sender=ALICE, recipient=ALICE_PROXY, text="hi", **extra
    )


def part(n: int) -> InboundSms:
    return sms(f"P{n}", concat_ref="9", concat_total=3, concat_part=n)


def test_concurrent_copies_of_one_webhook_store_one_message() -> None:
    conversation_make()

    results = run_together([lambda: inbound_receive(sms=sms("0A0000000000RACE"))] * 6)

    assert sorted(r.outcome for r in results) == [Outcome.DUPLICATE] * 5 + [Outcome.ROUTED]
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1


def test_the_last_parts_arriving_together_are_joined_at_once() -> None:
    conversation_make()
    inbound_receive(sms=part(1))

    results = run_together([functools.partial(inbound_receive, sms=part(n)) for n in (2, 3)])

    assert sorted(r.outcome for r in results) == [Outcome.PART_STORED, Outcome.ROUTED]
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1


def test_texts_arriving_together_after_the_close_get_one_out_of_session_reply() -> None:
    conversation_end(conversation_make())

    results = run_together(
        [functools.partial(inbound_receive, sms=sms(f"0A00000000OOS{n}")) for n in range(6)]
    )

    assert [r.outcome for r in results] == [Outcome.UNROUTED] * 6
    assert Message.objects.filter(status=Message.Status.UNROUTED).count() == 6
    replies = Message.objects.filter(purpose=Message.Purpose.OUT_OF_SESSION)
    assert list(replies.values_list("sender", "recipient")) == [(ALICE_PROXY, ALICE)]


def test_concurrent_claims_let_exactly_one_through() -> None:
    message = MessageFactory.create()

    results = run_together([lambda: message_claim(message_id=message.pk, now=timezone.now())] * 8)

    assert sum(result is not None for result in results) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.SENDING, 1)


def test_concurrent_out_of_session_texts_cannot_overshoot_the_hourly_limit(settings) -> None:
    settings.PROXY_OUT_OF_SESSION_LIMIT = 2
    people = [f"+4477009011{n:02d}" for n in range(6)]
    for person in people:
        conversation_end(conversation_make(alice=person, bob="+447700901099"))

    run_together(
        [
            functools.partial(
                inbound_receive,
                sms=InboundSms(
                    vonage_message_id=f"0A000000000OOS{n}",
                    sender=person,
                    recipient=ALICE_PROXY,
                    text="hello?",
                ),
            )
            for n, person in enumerate(people)
        ]
    )

    assert Message.objects.filter(purpose=Message.Purpose.OUT_OF_SESSION).count() == 2
