"""Inbound SMS, service level: routing (rule 2), out of session (6), parts (8), privacy (9)."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.common.redaction import (
    REDACTED_NUMBER,
    text_may_hold_a_number,
    text_redact_numbers,
)
from smsproxy.gateway.webhooks import InboundSms, WebhookIgnored, inbound_sms_parse
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import InboundPart, Message
from smsproxy.proxy.services.inbound import (
    CONCAT_TIMEOUT,
    InboundResult,
    Outcome,
    inbound_parts_flush_stale,
    inbound_receive,
    participant_route_get,
)
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    BOB_PROXY,
    conversation_end,
    conversation_make,
    payload,
)

pytestmark = pytest.mark.django_db

STRANGER = "+447700901999"


_ids = itertools.count(1)


def sms(
    text: str = "Hi",
    *,
    sender: str = ALICE,
    recipient: str = ALICE_PROXY,
    message_id: str = "",
    **extra: Any,
) -> InboundSms:
    return InboundSms(
        vonage_message_id=message_id or f"0A00000000{next(_ids):07d}",
        sender=sender,
        recipient=recipient,
        text=text,
        **extra,
    )


def receive_sms(*args: Any, **kwargs: Any) -> InboundResult:
    return inbound_receive(sms=sms(*args, **kwargs))


def outbound() -> list[Message]:
    return list(Message.objects.filter(direction=Message.Direction.OUTBOUND).order_by("pk"))


# --- parsing --------------------------------------------------------------------------------------


def test_parse_normalises_numbers_to_e164() -> None:
    parsed = inbound_sms_parse(payload("inbound_sms_text"))

    assert parsed.sender == ALICE
    assert parsed.recipient == ALICE_PROXY
    assert not parsed.is_part


def test_parse_keeps_an_alphanumeric_sender_as_it_is() -> None:
    parsed = inbound_sms_parse(payload("inbound_sms_text", msisdn="Vonage"))

    assert parsed.sender == "Vonage"


def test_parse_ignores_a_sender_id_longer_than_any_network_sends() -> None:
    """Refused, Vonage would send it again for a day; no retry would change our answer."""
    assert inbound_sms_parse(payload("inbound_sms_text", msisdn="A" * 16)).sender == "A" * 16
    with pytest.raises(WebhookIgnored, match="17 characters"):
        inbound_sms_parse(payload("inbound_sms_text", msisdn="A" * 17))


def test_parse_reads_concatenation() -> None:
    parsed = inbound_sms_parse(payload("inbound_sms_concat_part2"))

    assert (parsed.concat_ref, parsed.concat_total, parsed.concat_part) == ("108", 3, 2)
    assert parsed.is_part


def test_parse_drops_the_body_of_a_binary_sms() -> None:
    parsed = inbound_sms_parse(payload("inbound_sms_text", type="binary", text="", data="0011"))

    assert parsed.text == ""


# --- routing --------------------------------------------------------------------------------------


def test_a_text_reaches_the_other_participant_from_their_proxy_number() -> None:
    conversation = conversation_make()

    result = receive_sms("Where are you?")

    assert result.outcome == Outcome.ROUTED
    assert result.message is not None and result.message.conversation == conversation
    [forward] = outbound()
    assert forward == result.forward
    assert (forward.sender, forward.recipient, forward.text) == (BOB_PROXY, BOB, "Where are you?")
    assert forward.purpose == Message.Purpose.CONVERSATION
    assert forward.conversation == conversation
    assert forward.forwarded_from == result.message


def test_the_reply_goes_back_the_other_way() -> None:
    conversation_make()

    receive_sms("On my way", sender=BOB, recipient=BOB_PROXY)

    [forward] = outbound()
    assert (forward.sender, forward.recipient) == (ALICE_PROXY, ALICE)


def test_a_real_number_in_two_conversations_is_routed_by_the_number_it_texted() -> None:
    first = conversation_make()
    second = conversation_make(
        bob="+447700901003", alice_proxy="+447700900101", bob_proxy="+447700900201"
    )

    receive_sms("to the second", recipient="+447700900101")
    receive_sms("to the first", recipient=ALICE_PROXY)

    forwards = outbound()
    assert [(f.conversation, f.recipient, f.sender) for f in forwards] == [
        (second, "+447700901003", "+447700900201"),
        (first, BOB, BOB_PROXY),
    ]


def test_routing_is_one_query() -> None:
    conversation_make()

    with CaptureQueriesContext(connection) as queries:
        route = participant_route_get(sender=ALICE, proxy_number=ALICE_PROXY)

    assert route is not None and route.real_number == ALICE
    assert len(queries) == 1


def test_a_routed_sms_is_one_statement_on_postgresql_and_three_on_sqlite() -> None:
    """The webhook's hot path. PostgreSQL: the route, the inbound row and the forward are one
    statement, its own transaction. SQLite (no INSERT inside WITH): the route (with the other
    participant), the inbound row, the forward, in a transaction without a savepoint of its own
    (a repeat's IntegrityError rolls the transaction back)."""
    conversation_make()

    with CaptureQueriesContext(connection) as queries:
        result = receive_sms("On my way")

    assert result.outcome == Outcome.ROUTED and result.forward is not None
    statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert statements == ["WITH"]
    else:
        # Inside the test's transaction the service's own transaction is one savepoint.
        assert statements == ["SAVEPOINT", "SELECT", "INSERT", "INSERT", "RELEASE"]
    assert (result.forward.sender, result.forward.recipient) == (BOB_PROXY, BOB)


def test_a_closed_conversation_routes_nothing() -> None:
    conversation_end(conversation_make())

    result = receive_sms("Still there?")

    assert result.outcome == Outcome.UNROUTED
    assert result.message is not None
    assert result.message.status == Message.Status.UNROUTED
    assert result.message.conversation is None
    [reply] = outbound()
    assert reply.purpose == Message.Purpose.OUT_OF_SESSION


def test_an_expired_conversation_routes_nothing_before_the_sweep_closes_it() -> None:
    conversation = conversation_make(expires_at=timezone.now() - timedelta(seconds=1))

    result = receive_sms("Still there?")

    conversation.refresh_from_db()
    assert conversation.status == "active"  # not closed yet, but dead
    assert result.outcome == Outcome.UNROUTED
    assert [m.purpose for m in outbound()] == [Message.Purpose.OUT_OF_SESSION]


def test_a_stranger_texting_our_number_is_neither_routed_nor_answered() -> None:
    conversation_make()

    result = receive_sms("Who is this?", sender=STRANGER)

    assert result.outcome == Outcome.UNROUTED
    # Rule 6: only someone who was once a participant on this number gets a reply.
    assert outbound() == []


def test_an_sms_without_text_is_stored_but_not_forwarded() -> None:
    conversation_make()

    result = receive_sms("")

    assert result.outcome == Outcome.ROUTED
    assert outbound() == []


# --- out of session (rule 6) ----------------------------------------------------------------------


def test_out_of_session_reply_comes_from_the_number_texted(settings) -> None:
    settings.PROXY_OUT_OF_SESSION_REPLY = "This conversation has ended."
    conversation_end(conversation_make())

    receive_sms("Hello?")

    [reply] = outbound()
    assert (reply.sender, reply.recipient, reply.text) == (
        ALICE_PROXY,
        ALICE,
        "This conversation has ended.",
    )
    assert reply.conversation is None
    assert reply.status == Message.Status.QUEUED


def test_out_of_session_reply_at_most_once_an_hour_per_sender_and_number() -> None:
    conversation_end(conversation_make())

    receive_sms("one")
    receive_sms("two")
    receive_sms("three", sender=BOB, recipient=BOB_PROXY)  # another sender and number

    replies = outbound()
    assert [(r.recipient, r.sender) for r in replies] == [(ALICE, ALICE_PROXY), (BOB, BOB_PROXY)]
    assert Message.objects.filter(status=Message.Status.UNROUTED).count() == 3

    Message.objects.filter(pk=replies[0].pk).update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    receive_sms("four")

    assert len(outbound()) == 3


def test_the_hour_is_per_number_texted() -> None:
    conversation_end(conversation_make())
    conversation_end(conversation_make(alice_proxy="+447700900300"))

    receive_sms("one")
    receive_sms("two", recipient="+447700900300")

    assert [r.sender for r in outbound()] == [ALICE_PROXY, "+447700900300"]


def test_no_reply_when_the_setting_is_empty(settings) -> None:
    settings.PROXY_OUT_OF_SESSION_REPLY = ""
    conversation_end(conversation_make())

    result = receive_sms("Hello?")

    assert result.outcome == Outcome.UNROUTED
    assert outbound() == []


def test_no_reply_from_a_number_that_is_not_ours() -> None:
    result = receive_sms("Hello?", recipient="+447700900555")

    assert result.outcome == Outcome.UNROUTED
    assert outbound() == []


def test_no_reply_from_a_released_number() -> None:
    conversation_end(conversation_make())
    VirtualNumber.objects.filter(msisdn=ALICE_PROXY).update(
        status="released", released_at=timezone.now()
    )

    receive_sms("Hello?")

    assert outbound() == []


def test_no_reply_to_an_alphanumeric_sender_or_to_our_own_number() -> None:
    conversation_end(conversation_make())

    receive_sms("Promo", sender="Vonage")
    receive_sms("Loop?", sender=BOB_PROXY)

    assert outbound() == []


def test_texting_the_pool_from_random_numbers_sends_nothing() -> None:
    """Rule 6's abuse case: a few hundred strangers (random UK and US mobiles) text our numbers."""
    conversation_end(conversation_make())
    rng = random.Random(6)
    senders = [f"+447{rng.randrange(10**8, 10**9)}" for _ in range(200)] + [
        f"+1202{rng.randrange(2 * 10**6, 10**7)}" for _ in range(100)
    ]

    for n, sender in enumerate(senders):
        receive_sms("hi", sender=sender, recipient=(ALICE_PROXY, BOB_PROXY)[n % 2])

    assert Message.objects.filter(status=Message.Status.UNROUTED).count() == 300
    assert outbound() == []


def test_an_earlier_participant_of_another_number_gets_no_reply_from_this_one() -> None:
    conversation_end(conversation_make())

    receive_sms("Hello?", sender=ALICE, recipient=BOB_PROXY)  # Bob's number, never Alice's

    assert outbound() == []


def test_a_participant_of_any_earlier_conversation_on_the_number_gets_a_reply() -> None:
    conversation_end(conversation_make())
    conversation_end(conversation_make(bob="+447700901003"))

    receive_sms("Hello again?")

    assert [(r.recipient, r.sender) for r in outbound()] == [(ALICE, ALICE_PROXY)]


def test_the_hourly_limit_of_replies_holds_across_senders_and_numbers(settings) -> None:
    settings.PROXY_OUT_OF_SESSION_LIMIT = 3
    people = [f"+4477009011{n:02d}" for n in range(5)]
    for person in people:
        conversation_end(conversation_make(alice=person, bob="+447700901099"))

    for person in people:
        receive_sms("Hello?", sender=person)

    assert [r.recipient for r in outbound()] == people[:3]

    # An hour later the limit has room again.
    Message.objects.filter(purpose=Message.Purpose.OUT_OF_SESSION).update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    receive_sms("Anyone?", sender=people[4])
    assert [r.recipient for r in outbound()][-1] == people[4]


@pytest.mark.parametrize("sender", ["+881612345678", "+882345678901", "+18005550100"])
def test_no_reply_to_a_number_that_cannot_receive_sms(sender: str) -> None:
    """Non-geographic and toll-free senders (spoofed, or an earlier participant's number
    that slipped in) are never answered: a reply would cost us or reach nobody."""
    conversation_end(conversation_make(alice=sender))

    receive_sms("Hello?", sender=sender)

    assert outbound() == []


# --- redaction (rule 9) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Call me on 07700 900123 tomorrow", f"Call me on {REDACTED_NUMBER} tomorrow"),
        ("my number: +44 7700 900123.", f"my number: {REDACTED_NUMBER}."),
        ("whatsapp 447700900123", f"whatsapp {REDACTED_NUMBER}"),
        ("US: (555) 010-0123 or 555.010.0124", f"US: {REDACTED_NUMBER} or {REDACTED_NUMBER}"),
        ("spaced 0 7 7 0 0 9 0 0 1 2 3", f"spaced {REDACTED_NUMBER}"),
        ("Flat 12, ready 10.30 - 11.45, £25.50", "Flat 12, ready 10.30 - 11.45, £25.50"),
        ("0770-090-0123 or 07700.900.123", f"{REDACTED_NUMBER} or {REDACTED_NUMBER}"),
        # Fullwidth digits, as some phone keyboards type them.
        (
            "fullwidth \uff10\uff17\uff17\uff10\uff10 \uff19\uff10\uff10\uff11\uff12\uff13",
            f"fullwidth {REDACTED_NUMBER}",
        ),
        # Ordinary digits are kept: minutes, codes, a 6-digit order number, a postcode.
        ("5 minutes, code 4921, order 123456", "5 minutes, code 4921, order 123456"),
        ("Postcode SW1A 1AA, flat 221B", "Postcode SW1A 1AA, flat 221B"),
        # Dates and time ranges look like numbers to both passes; they are kept.
        ("ready 10.30-11.45 on 24.11.2026", "ready 10.30-11.45 on 24.11.2026"),
        ("check-in 2026-11-24, out 26-11-26", "check-in 2026-11-24, out 26-11-26"),
        ("on 24.11.2026 call 07700 900123", f"on 24.11.2026 call {REDACTED_NUMBER}"),
        # Amounts after a currency sign are kept; a number dressed up as one is not.
        ("deposit £1 250 000 or $2,500,000.50", "deposit £1 250 000 or $2,500,000.50"),
        ("paid £5 07700900123", f"paid £5 {REDACTED_NUMBER}"),
        ("£ 0770 0900 123", f"£ {REDACTED_NUMBER}"),
        # Seven or more digits go, whatever they were meant to be: a local number looks the same.
        ("order 1234567", f"order {REDACTED_NUMBER}"),
        # Arabic-Indic digits are digits too.
        ("\u0660\u0667\u0667\u0660\u0660 \u0669\u0660\u0660\u0661\u0662\u0663", REDACTED_NUMBER),
    ],
)
def test_text_redact_numbers(text: str, expected: str) -> None:
    assert text_redact_numbers(text=text, region="GB") == expected


@pytest.mark.parametrize(
    "text,may",
    [
        ("On my way, 10 minutes", False),
        ("code 492 and 123", False),  # six digits in all
        ("1 2 3 4 5 6 7", True),
        ("\uff10\uff17\uff17\uff10\uff10\uff19\uff10", True),  # fullwidth
        ("\u0660\u0667\u0667\u0660\u0660\u0669\u0660", True),  # Arabic-Indic
    ],
)
def test_only_a_text_with_seven_digits_may_hold_a_number(text: str, may: bool) -> None:
    assert text_may_hold_a_number(text) is may
    if not may:
        assert text_redact_numbers(text=text, region="GB") == text


def test_forwarded_text_is_redacted(settings) -> None:
    settings.PROXY_REDACT_NUMBERS = True
    conversation_make()

    result = receive_sms("Text me on 07700 900123 instead")

    assert result.message is not None
    assert result.message.text == "Text me on 07700 900123 instead"  # stored as received
    [forward] = outbound()
    assert forward.text == f"Text me on {REDACTED_NUMBER} instead"


def test_redaction_can_be_turned_off(settings) -> None:
    settings.PROXY_REDACT_NUMBERS = False
    conversation_make()

    receive_sms("Text me on 07700 900123 instead")

    assert outbound()[0].text == "Text me on 07700 900123 instead"


def test_unicode_is_forwarded_unchanged() -> None:
    conversation_make()

    receive_sms("Ça marche 👍 — à tout de suite ✓")

    assert outbound()[0].text == "Ça marche 👍 — à tout de suite ✓"


# --- idempotency ----------------------------------------------------------------------------------


def test_a_repeated_message_id_changes_nothing() -> None:
    conversation_make()
    first = receive_sms("once", message_id="0A00000000DUPE")

    again = receive_sms("once", message_id="0A00000000DUPE")

    assert first.outcome == Outcome.ROUTED
    assert again.outcome == Outcome.DUPLICATE
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert len(outbound()) == 1


def test_a_repeated_unrouted_message_is_stored_once() -> None:
    conversation_end(conversation_make())
    receive_sms("hello", message_id="0A00000000DUPE")

    again = receive_sms("hello", message_id="0A00000000DUPE")

    assert again.outcome == Outcome.DUPLICATE
    assert Message.objects.filter(status=Message.Status.UNROUTED).count() == 1
    assert len(outbound()) == 1


# --- concatenated SMS (rule 8) --------------------------------------------------------------------


def part(
    n: int, total: int = 3, *, ref: str = "108", text: str | None = None, message_id: str = ""
) -> InboundSms:
    return sms(
        text if text is not None else f"<part {n}>",
        message_id=message_id or f"0B0000{ref}{n:04d}{total}",
        concat_ref=ref,
        concat_total=total,
        concat_part=n,
    )


def test_parts_in_any_order_are_joined_in_order_and_forwarded_once() -> None:
    conversation_make()

    outcomes = [inbound_receive(sms=part(n)).outcome for n in (3, 1, 2)]

    assert outcomes == [Outcome.PART_STORED, Outcome.PART_STORED, Outcome.ROUTED]
    [forward] = outbound()
    assert forward.text == "<part 1><part 2><part 3>"
    inbound = forward.forwarded_from
    assert inbound is not None and inbound.vonage_message_id is None
    assert set(InboundPart.objects.values_list("message", flat=True)) == {inbound.pk}


def test_a_repeated_part_is_ignored() -> None:
    conversation_make()
    inbound_receive(sms=part(1))

    assert inbound_receive(sms=part(1)).outcome == Outcome.DUPLICATE
    assert inbound_receive(sms=part(2)).outcome == Outcome.PART_STORED
    assert inbound_receive(sms=part(3)).outcome == Outcome.ROUTED
    assert inbound_receive(sms=part(3)).outcome == Outcome.DUPLICATE  # after the join too
    assert len(outbound()) == 1


def test_a_reused_concat_ref_starts_a_new_message() -> None:
    conversation_make()
    for n in (1, 2):
        inbound_receive(sms=part(n, 2, ref="7", message_id=f"first-{n}"))

    for n in (2, 1):
        inbound_receive(sms=part(n, 2, ref="7", text=f"[again {n}]", message_id=f"second-{n}"))

    assert [f.text for f in outbound()] == ["<part 1><part 2>", "[again 1][again 2]"]


def test_parts_of_the_same_ref_from_different_senders_stay_apart() -> None:
    conversation_make()
    inbound_receive(sms=part(1, 2, ref="5", message_id="alice-1"))
    inbound_receive(
        sms=sms(
            "bob part 1",
            sender=BOB,
            recipient=BOB_PROXY,
            message_id="bob-1",
            concat_ref="5",
            concat_total=2,
            concat_part=1,
        )
    )

    assert outbound() == []


def test_an_incomplete_message_is_forwarded_as_it_is_after_the_timeout(caplog) -> None:
    conversation_make()
    inbound_receive(sms=part(1))
    inbound_receive(sms=part(3))

    assert (
        inbound_parts_flush_stale(now=timezone.now() + CONCAT_TIMEOUT - timedelta(seconds=5)) == []
    )
    assert outbound() == []

    [result] = inbound_parts_flush_stale(now=timezone.now() + CONCAT_TIMEOUT + timedelta(seconds=1))

    assert result.outcome == Outcome.ROUTED
    [forward] = outbound()
    assert forward.text == "<part 1><part 3>"
    assert forward.recipient == BOB
    assert inbound_parts_flush_stale(now=timezone.now() + CONCAT_TIMEOUT * 2) == []
    # The warning names the sender by country prefix and last digits only.
    assert "from +44*******001 incomplete" in caplog.text
    assert ALICE not in caplog.text


def test_a_part_arriving_after_the_timeout_is_forwarded_on_its_own_later() -> None:
    conversation_make()
    inbound_receive(sms=part(1, 2))
    inbound_parts_flush_stale(now=timezone.now() + CONCAT_TIMEOUT + timedelta(seconds=1))

    assert inbound_receive(sms=part(2, 2)).outcome == Outcome.PART_STORED
    inbound_parts_flush_stale(now=timezone.now() + CONCAT_TIMEOUT + timedelta(seconds=1))

    assert [f.text for f in outbound()] == ["<part 1>", "<part 2>"]


def test_parts_of_an_unrouted_message_get_one_reply() -> None:
    conversation_end(conversation_make())

    for n in (1, 2, 3):
        inbound_receive(sms=part(n))

    assert [m.purpose for m in outbound()] == [Message.Purpose.OUT_OF_SESSION]
    assert (
        Message.objects.get(direction=Message.Direction.INBOUND).text == "<part 1><part 2><part 3>"
    )
