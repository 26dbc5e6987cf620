"""Routing invariants, property-based: random sequences of what the marketplace, Vonage and
strangers do, driven through the real API and webhook, checked against a model after each step.

Steps: open a conversation (API), close it (API), expire it (its clock moves past
`expires_at`), reopen it (API), inbound SMS from participants and strangers to any pool number
(fresh, repeated and concatenated parts in any order). After every step:
- a forward goes only to the other live participant on that proxy number, from that
  participant's proxy number, and at most once per inbound message;
- no outbound SMS has anyone's real number as sender;
- no real number appears inside a forwarded text (redaction is on);
- no (real number, proxy number) pair is live twice.

A pool of 2 to 3 numbers keeps conflicts and exhaustion frequent. Example counts are bounded for
CI; `ROUTING_EXAMPLES` raises them for a longer local run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db.models import Count
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, InboundPart, Message, Participant
from tests.factories import VirtualNumberFactory

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("ROUTING_EXAMPLES", "12"))
INBOUND_URL = "/webhooks/vonage/inbound-sms/"
CREATE_URL = "/api/conversations/"

# People use the upper half of the drama range; the pool the lower half.
PEOPLE = [f"+447700900{n}" for n in (501, 502, 503, 504)]
STRANGERS = ["+447700900666", "+447700900777"]
POOL = [f"+447700900{n:03d}" for n in (1, 2, 3)]
TEXTS = [
    "On my way",
    "Call me on 07700 900502 instead",  # a participant's own number, national format
    "my number is +447700900503",
    "whatsapp 447700900504 ok?",
    "Gate code 4412, flat 7",
]


def _digits(number: str) -> str:
    return number.lstrip("+")


def _mentions_a_real_number(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return any(
        _digits(person) in digits or "0" + _digits(person)[2:] in digits
        for person in PEOPLE + STRANGERS
    )


@dataclass
class _Conversation:
    public_id: str
    # real number → proxy number the person texts
    proxies: dict[str, str]
    live: bool = True

    def other(self, real_number: str) -> str:
        return next(number for number in self.proxies if number != real_number)


@dataclass
class _Model:
    conversations: list[_Conversation] = field(default_factory=list)

    def route(self, sender: str, proxy: str) -> _Conversation | None:
        live = [
            conversation
            for conversation in self.conversations
            if conversation.live and conversation.proxies.get(sender) == proxy
        ]
        assert len(live) <= 1, f"{sender} on {proxy} is live in {len(live)} conversations"
        return live[0] if live else None


class RoutingMachine(RuleBasedStateMachine):
    conversations = Bundle("conversations")
    ended = Bundle("ended")
    sent_ids = Bundle("sent_ids")

    def __init__(self) -> None:
        super().__init__()
        # Each example starts from an empty pool (forwards first: they protect their inbound).
        Message.objects.filter(forwarded_from__isnull=False).delete()
        for model in (InboundPart, Message, Participant, Conversation, VirtualNumber):
            model.objects.all().delete()
        for msisdn in POOL[: self.pool_size]:
            VirtualNumberFactory.create(msisdn=msisdn)
        self.model = _Model()
        self.webhooks = Client()
        self.api = APIClient()
        self.api.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        self.counter = 0

    pool_size = 3
    token = ""

    def _forwards(self) -> list[Message]:
        return list(
            Message.objects.filter(
                direction=Message.Direction.OUTBOUND, forwarded_from__isnull=False
            ).select_related("forwarded_from")
        )

    @rule(
        target=conversations,
        a=st.sampled_from(PEOPLE),
        b=st.sampled_from(PEOPLE),
    )
    def create(self, a: str, b: str) -> Any:
        body = {"participants": [{"number": a, "name": "A"}, {"number": b, "name": "B"}]}
        response = self.api.post(CREATE_URL, body, format="json")
        if a == b:
            assert response.status_code == HTTPStatus.BAD_REQUEST, response.json()
            return None
        if response.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
            assert response.json()["code"] == "pool_exhausted"
            return None
        assert response.status_code == HTTPStatus.CREATED, response.json()
        data = response.json()
        proxies = {p["number"]: p["proxy_number"] for p in data["participants"]}
        assert set(proxies) == {a, b}
        assert set(proxies.values()) <= set(POOL)
        conversation = _Conversation(public_id=data["id"], proxies=proxies)
        self.model.conversations.append(conversation)
        return conversation

    @rule(target=ended, conversation=consumes(conversations))
    def close(self, conversation: _Conversation | None) -> Any:
        if conversation is None:
            return None
        response = self.api.post(f"{CREATE_URL}{conversation.public_id}/close/")
        assert response.status_code == HTTPStatus.OK
        assert response.json()["status"] == "closed"
        conversation.live = False
        return conversation

    @rule(target=ended, conversation=consumes(conversations))
    def expire(self, conversation: _Conversation | None) -> Any:
        """The clock moves past this conversation's expiry (the sweep has not run)."""
        if conversation is None:
            return None
        Conversation.objects.filter(public_id=conversation.public_id).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        conversation.live = False
        return conversation

    @rule(target=conversations, conversation=consumes(ended))
    def reopen(self, conversation: _Conversation | None) -> Any:
        """A late reply makes the marketplace reopen an ended conversation."""
        if conversation is None:
            return None
        response = self.api.post(f"{CREATE_URL}{conversation.public_id}/reopen/", {}, format="json")
        if response.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
            assert response.json()["code"] == "pool_exhausted"
            return None
        assert response.status_code == HTTPStatus.OK, response.json()
        data = response.json()
        assert data["status"] == "active"
        conversation.proxies = {p["number"]: p["proxy_number"] for p in data["participants"]}
        assert set(conversation.proxies.values()) <= set(POOL)
        conversation.live = True
        return conversation

    def _inbound(self, params: dict[str, str]) -> None:
        response = self.webhooks.get(INBOUND_URL, params)
        assert response.status_code == HTTPStatus.OK, response.content

    def _check_new_forward(
        self, before: set[int], sender: str, proxy: str, expect_one: bool
    ) -> None:
        new = [message for message in self._forwards() if message.pk not in before]
        route = self.model.route(sender, proxy)
        if route is None or not expect_one:
            assert new == [], f"forwarded {new} with no live route for {sender} on {proxy}"
            return
        assert len(new) == 1, f"{len(new)} forwards for one inbound SMS"
        other = route.other(sender)
        assert (new[0].recipient, new[0].sender) == (other, route.proxies[other])

    @rule(
        target=sent_ids,
        sender=st.sampled_from(PEOPLE + STRANGERS),
        proxy=st.sampled_from(POOL),
        text=st.sampled_from(TEXTS),
    )
    def inbound(self, sender: str, proxy: str, text: str) -> str:
        self.counter += 1
        message_id = f"IN{self.counter:06d}"
        before = {message.pk for message in self._forwards()}
        self._inbound(
            {
                "msisdn": _digits(sender),
                "to": _digits(proxy),
                "messageId": message_id,
                "text": text,
                "type": "text",
            }
        )
        self._check_new_forward(before, sender, proxy, expect_one=True)
        return f"{message_id}|{sender}|{proxy}|{text}"

    @rule(sent=sent_ids)
    def inbound_again(self, sent: str) -> None:
        """Vonage re-sends a webhook it already delivered: nothing changes."""
        message_id, sender, proxy, text = sent.split("|", 3)
        before = (Message.objects.count(), {message.pk for message in self._forwards()})
        self._inbound(
            {
                "msisdn": _digits(sender),
                "to": _digits(proxy),
                "messageId": message_id,
                "text": text,
                "type": "text",
            }
        )
        assert Message.objects.count() == before[0]
        self._check_new_forward(before[1], sender, proxy, expect_one=False)

    @rule(
        sender=st.sampled_from(PEOPLE),
        proxy=st.sampled_from(POOL),
        order=st.permutations([1, 2, 3]),
        repeat=st.booleans(),
    )
    def inbound_long(self, sender: str, proxy: str, order: list[int], repeat: bool) -> None:
        """A three-part SMS whose parts arrive in any order (one maybe twice)."""
        self.counter += 1
        ref = f"R{self.counter}"
        before = {message.pk for message in self._forwards()}
        parts = [*order, order[0]] if repeat else order
        for part in parts:
            self._inbound(
                {
                    "msisdn": _digits(sender),
                    "to": _digits(proxy),
                    "messageId": f"{ref}-{part}",
                    "text": f"part{part} ",
                    "type": "text",
                    "concat": "true",
                    "concat-ref": ref,
                    "concat-total": "3",
                    "concat-part": str(part),
                }
            )
        self._check_new_forward(before, sender, proxy, expect_one=True)
        joined = Message.objects.filter(
            direction=Message.Direction.INBOUND, sender=sender, text="part1 part2 part3 "
        )
        assert joined.count() >= 1

    @invariant()
    def no_real_number_sends_anything(self) -> None:
        senders = set(
            Message.objects.filter(direction=Message.Direction.OUTBOUND).values_list(
                "sender", flat=True
            )
        )
        assert senders <= set(POOL), senders - set(POOL)

    @invariant()
    def no_real_number_in_a_forwarded_text(self) -> None:
        for forward in self._forwards():
            assert not _mentions_a_real_number(forward.text), forward.text

    @invariant()
    def nothing_forwarded_twice(self) -> None:
        counts = (
            Message.objects.filter(forwarded_from__isnull=False)
            .values("forwarded_from")
            .annotate(total=Count("pk"))
            .filter(total__gt=1)
        )
        assert not counts.exists()

    @invariant()
    def no_route_live_twice(self) -> None:
        now = timezone.now()
        live = (
            Participant.objects.filter(active=True, conversation__status="active")
            .exclude(conversation__expires_at__lte=now)
            .values("real_number", "proxy_number")
            .annotate(total=Count("pk"))
            .filter(total__gt=1)
        )
        assert not live.exists()

    @precondition(lambda self: True)
    @invariant()
    def model_and_database_agree_on_live_conversations(self) -> None:
        now = timezone.now()
        live_ids = {
            str(public_id)
            for public_id in Conversation.objects.filter(status="active")
            .exclude(expires_at__lte=now)
            .values_list("public_id", flat=True)
        }
        assert live_ids == {c.public_id for c in self.model.conversations if c.live}


@pytest.mark.parametrize("pool_size", [2, 3])
def test_routing_invariants_hold_for_any_sequence(api_user: Any, pool_size: int) -> None:
    token = Token.objects.create(user=api_user).key

    class Machine(RoutingMachine):
        pass

    Machine.pool_size = pool_size
    Machine.token = token
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
