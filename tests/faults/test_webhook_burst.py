"""A burst of inbound webhooks from 50 concurrent clients against gunicorn (issue 10).

2,000 webhooks (FAULTS_BURST_WEBHOOKS lowers it) over 300 live conversations, in the three
encodings Vonage uses, one in ten a repeat of an earlier one (Vonage re-sends what it thinks
was lost, here possibly while the first copy is still being handled): every answer is 200,
every `messageId` is stored once and every routed SMS forwarded once (one queued row each, to
the other participant, from that participant's proxy number).

Real processes: gunicorn as the Procfile runs it (production settings, no broker: the forwards
stay queued for `run_outbox`), on the PostgreSQL test database.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from smsproxy.proxy.models import Message
from tests.faults.processes import child_database_url, child_env, children, gunicorn
from tests.proxy.fixtures import ALICE_PROXY, BOB_PROXY, INBOUND_URL, conversation_make

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

WEBHOOKS = int(os.environ.get("FAULTS_BURST_WEBHOOKS", "2000"))
CLIENTS = 50
CONVERSATIONS = 300
BURST_TIMEOUT = 240.0  # bounds the test, not a speed requirement


def send(session: requests.Session, base_url: str, webhook: dict[str, Any]) -> int:
    url = base_url + INBOUND_URL
    form = webhook["form"]
    if webhook["encoding"] == "get":
        response = session.get(url, params=form, timeout=30)
    elif webhook["encoding"] == "form":
        response = session.post(url, data=form, timeout=30)
    else:
        response = session.post(
            url, data=json.dumps(form), headers={"Content-Type": "application/json"}, timeout=30
        )
    return response.status_code


def test_a_burst_of_webhooks_is_stored_once_and_forwarded_once(tmp_path: Path) -> None:
    database_url = child_database_url()
    rng = random.Random(10)
    # Conversation i: A_i texts Alice's proxy number to reach B_i, B_i Bob's to reach A_i.
    people = [(f"+447700901{i:03d}", f"+447700902{i:03d}") for i in range(CONVERSATIONS)]
    for a, b in people:
        conversation_make(alice=a, bob=b)

    originals: list[dict[str, Any]] = []
    for index in range(WEBHOOKS - WEBHOOKS // 10):
        a, b = rng.choice(people)
        sender, proxy_number = rng.choice([(a, ALICE_PROXY), (b, BOB_PROXY)])
        form = {
            "msisdn": sender.removeprefix("+"),
            "to": proxy_number.removeprefix("+"),
            "messageId": f"0B{index:015X}",
            "text": f"Message {index} from {sender[-3:]}",
            "type": "text",
            "message-timestamp": "2026-11-24 20:00:00",
        }
        originals.append({"form": form, "encoding": rng.choice(["get", "form", "json"])})
    repeats = [rng.choice(originals) for _ in range(WEBHOOKS // 10)]
    webhooks = originals + repeats
    rng.shuffle(webhooks)

    answers: Counter[int | str] = Counter()
    answers_lock = threading.Lock()
    pending: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    for webhook in webhooks:
        pending.put(webhook)
    stop = threading.Event()

    with children(tmp_path) as start:
        env = child_env(
            DATABASE_URL=database_url,
            DJANGO_DEBUG="0",  # production settings; served over plain http on loopback
            DJANGO_SECURE_SSL_REDIRECT="0",
        )
        base_url = gunicorn(start, env=env)

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        webhook = pending.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        answer: int | str = send(session, base_url, webhook)
                    except requests.RequestException as error:
                        answer = type(error).__name__
                    with answers_lock:
                        answers[answer] += 1

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BURST_TIMEOUT)
        stop.set()
        assert not any(thread.is_alive() for thread in threads), "the burst did not finish in time"

    assert answers == Counter({200: WEBHOOKS})

    inbound = Message.objects.filter(direction=Message.Direction.INBOUND)
    stored_ids = Counter(inbound.values_list("vonage_message_id", flat=True))
    assert stored_ids == Counter({webhook["form"]["messageId"]: 1 for webhook in originals})
    assert set(inbound.values_list("status", flat=True)) == {Message.Status.RECEIVED}

    forwards = list(
        Message.objects.filter(direction=Message.Direction.OUTBOUND).values_list(
            "forwarded_from__vonage_message_id", "status", "sender", "recipient"
        )
    )
    assert Counter(forward[0] for forward in forwards) == stored_ids
    other = {a: (BOB_PROXY, b) for a, b in people} | {b: (ALICE_PROXY, a) for a, b in people}
    senders = {
        webhook["form"]["messageId"]: "+" + webhook["form"]["msisdn"] for webhook in originals
    }
    for message_id, status, sender, recipient in forwards:
        assert status == Message.Status.QUEUED
        assert (sender, recipient) == other[senders[message_id]]
