"""PostgreSQL restarted during webhook traffic (issue 10, DESIGN.md §8).

A private PostgreSQL cluster (never the system one) serves gunicorn as the Procfile runs it
(production settings, sandbox provider, no broker: forwards stay queued). A few clients send
inbound webhooks continuously, in the three encodings Vonage uses, from the participants of a
few live conversations; in the middle the database is stopped (`pg_ctl stop -m fast`), left
down for a while and started again. Then traffic pauses and the database is restarted once more
between requests: every gunicorn worker still holds a persistent connection (CONN_MAX_AGE) to
the old server that no error has closed, and the first request on it must not fail (what
CONN_HEALTH_CHECKS is for).

What must hold:
- every answer is 200, or a 5xx from a request that was in flight while the database was down
  (or within a short margin after `pg_ctl start` returned, for the workers to reconnect); no
  request is left unanswered; no 5xx at all after the restart between requests;
- each webhook that was not answered 200 is re-sent, as Vonage does, until it is; re-sending
  webhooks that were answered 200 (Vonage does when it missed our answer) is answered 200 too;
- afterwards every `messageId` is stored exactly once and forwarded exactly once (one queued
  row each, to the other participant, from that participant's proxy number) — also the ones
  whose transaction reached PostgreSQL just before it went away.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from smsproxy.proxy.models import Message
from tests.faults.processes import (
    REPO,
    PrivatePostgres,
    child_env,
    children,
    gunicorn,
    manage,
    wait_until,
)
from tests.proxy.fixtures import ALICE_PROXY, BOB_PROXY, INBOUND_URL

pytestmark = [pytest.mark.faults]

CLIENTS = 4
CONVERSATIONS = 5
OUTAGE = 2.0  # seconds between `pg_ctl stop` returning and `pg_ctl start`
# After `pg_ctl start -w` returned (the server accepts connections), a request may still have
# been in flight on a connection opened before: a 5xx is allowed for requests started up to
# this long after the restart. A request started later must find the database back.
RECONNECT_MARGIN = 1.0
BEFORE_AND_AFTER = 20  # 200 answers wanted before the outage and after it (bounds, not speeds)
RETRY_DEADLINE = 30.0  # seconds for the re-sent webhooks to be answered 200
DATABASE = "smsproxy_restart"

# Conversation i: A_i texts Alice's proxy number to reach B_i, B_i Bob's to reach A_i.
PEOPLE = [(f"+447700903{i:03d}", f"+447700904{i:03d}") for i in range(CONVERSATIONS)]


@dataclass
class Sent:
    """One delivery of a webhook: when it was sent and answered (monotonic), and the answer."""

    message_id: str
    started: float
    finished: float
    answer: int | str  # the HTTP status, or the name of the exception when none came


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


def run_manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        manage(*args),
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {args[0]} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def webhook(message_id: str, rng: random.Random) -> dict[str, Any]:
    a, b = rng.choice(PEOPLE)
    sender, proxy_number = rng.choice([(a, ALICE_PROXY), (b, BOB_PROXY)])
    form = {
        "msisdn": sender.removeprefix("+"),
        "to": proxy_number.removeprefix("+"),
        "messageId": message_id,
        "text": f"Message {message_id} from {sender[-3:]}",
        "type": "text",
        "message-timestamp": "2026-11-24 20:00:00",
    }
    return {"form": form, "encoding": rng.choice(["get", "form", "json"])}


def send(session: requests.Session, base_url: str, hook: dict[str, Any]) -> Sent:
    url = base_url + INBOUND_URL
    form = hook["form"]
    started = time.monotonic()
    answer: int | str
    try:
        if hook["encoding"] == "get":
            response = session.get(url, params=form, timeout=30)
        elif hook["encoding"] == "form":
            response = session.post(url, data=form, timeout=30)
        else:
            response = session.post(
                url, data=json.dumps(form), headers={"Content-Type": "application/json"}, timeout=30
            )
        answer = response.status_code
    except requests.RequestException as error:
        answer = type(error).__name__
    return Sent(form["messageId"], started, time.monotonic(), answer)


def stored(env: dict[str, str]) -> dict[str, Any]:
    """The inbound messages and the forwards in the private database, read by a child."""
    script = """
import json
from smsproxy.proxy.models import Message
inbound = Message.objects.filter(direction=Message.Direction.INBOUND)
outbound = Message.objects.filter(direction=Message.Direction.OUTBOUND)
print(json.dumps({
    "inbound": list(inbound.values_list("vonage_message_id", "status")),
    "forwards": list(outbound.values_list(
        "forwarded_from__vonage_message_id", "status", "sender", "recipient"
    )),
}))
"""
    output = run_manage("shell", "-c", script, env=env)
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def test_a_database_restart_fails_only_requests_during_the_outage_and_loses_nothing(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    private_postgres.create_database(DATABASE)
    setup_env = child_env(DATABASE_URL=private_postgres.url(DATABASE))
    run_manage("migrate", "--noinput", env=setup_env)
    run_manage(
        "shell",
        "-c",
        "from tests.proxy.fixtures import conversation_make\n"
        f"for a, b in {PEOPLE!r}:\n"
        "    conversation_make(alice=a, bob=b)\n",
        env=setup_env,
    )

    webhooks: dict[str, dict[str, Any]] = {}
    deliveries: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()
    traffic = {"paused": 0, "in_flight": 0}

    with children(tmp_path) as start:
        env = child_env(
            DATABASE_URL=private_postgres.url(DATABASE),
            DJANGO_DEBUG="0",  # production settings; served over plain http on loopback
            DJANGO_SECURE_SSL_REDIRECT="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
        )
        base_url = gunicorn(start, env=env)

        def client(number: int) -> None:
            rng = random.Random(number)
            with requests.Session() as session:
                index = 0
                while not stop.is_set():
                    hook = webhook(f"0C{number:02X}{index:013X}", rng)
                    with lock:
                        paused = bool(traffic["paused"])
                        if not paused:
                            traffic["in_flight"] += 1
                            webhooks[hook["form"]["messageId"]] = hook
                    if paused:
                        time.sleep(0.05)
                        continue
                    index += 1
                    sent = send(session, base_url, hook)
                    with lock:
                        deliveries.append(sent)
                        traffic["in_flight"] -= 1

        def quiet() -> bool:
            with lock:
                traffic["paused"] = 1
                return traffic["in_flight"] == 0

        def answered_200(since: float) -> bool:
            with lock:
                return (
                    sum(1 for d in deliveries if d.answer == 200 and d.started > since)
                    >= BEFORE_AND_AFTER
                )

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: answered_200(0.0), seconds=30, what="traffic before the outage")
            outage_started = time.monotonic()
            private_postgres.stop("fast")
            time.sleep(OUTAGE)
            private_postgres.start()
            outage_ended = time.monotonic()
            wait_until(
                lambda: answered_200(outage_ended + RECONNECT_MARGIN),
                seconds=30,
                what="traffic after the outage",
            )
            # A restart while no request is running: every worker keeps a connection to the
            # old server (CONN_MAX_AGE) that no error has closed. The next requests must not
            # fail on it (no 5xx is allowed here at all).
            wait_until(quiet, seconds=40, what="the requests in flight to finish")
            private_postgres.stop("fast")
            private_postgres.start()
            quiet_restart = time.monotonic()
            with lock:
                traffic["paused"] = 0
            wait_until(
                lambda: answered_200(quiet_restart),
                seconds=30,
                what="traffic after the restart between requests",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(40)
        assert not any(thread.is_alive() for thread in threads), "a client did not finish"

        def timeline(sent: Sent) -> str:
            return (
                f"{sent.message_id}: {sent.answer}, sent {sent.started - outage_ended:+.2f}s"
                f" answered {sent.finished - outage_ended:+.2f}s after the restart"
            )

        during = [d for d in deliveries if outage_started <= d.started <= outage_ended]
        assert during, "no webhook was sent while the database was down"
        not_ok = [d for d in deliveries if d.answer != 200]
        unanswered = [timeline(d) for d in not_ok if not isinstance(d.answer, int)]
        assert not unanswered, f"gunicorn did not answer: {unanswered}"
        not_5xx = [timeline(d) for d in not_ok if not 500 <= int(d.answer) < 600]
        assert not not_5xx, f"answers other than 200 and 5xx: {not_5xx}"
        outside = [
            timeline(d)
            for d in not_ok
            if d.finished < outage_started or d.started > outage_ended + RECONNECT_MARGIN
        ]
        assert not outside, (
            f"5xx outside the outage (from {outage_started - outage_ended:.2f}s to +0.00s;"
            f" the restart between requests ended at {quiet_restart - outage_ended:+.2f}s):"
            f" {outside}"
        )

        # Vonage re-sends what was not answered 200, until it is; and sometimes what was.
        retry = sorted({d.message_id for d in not_ok})
        again = sorted(
            {d.message_id for d in during if d.answer == 200}
            | set(random.Random(10).sample(sorted(webhooks), 10))
        )
        deadline = time.monotonic() + RETRY_DEADLINE
        with requests.Session() as session:
            for message_id in again:
                sent = send(session, base_url, webhooks[message_id])
                assert sent.answer == 200, f"a repeat of a stored webhook: {timeline(sent)}"
            while retry:
                answers = [send(session, base_url, webhooks[message_id]) for message_id in retry]
                retry = [sent.message_id for sent in answers if sent.answer != 200]
                if retry and time.monotonic() > deadline:
                    pytest.fail(f"still not 200 when re-sent: {[timeline(a) for a in answers]}")
                time.sleep(0.2)

    result = stored(setup_env)
    inbound_ids = Counter(message_id for message_id, _ in result["inbound"])
    assert inbound_ids == Counter(dict.fromkeys(webhooks, 1))
    assert {status for _, status in result["inbound"]} == {Message.Status.RECEIVED}
    forwards = result["forwards"]
    assert Counter(forward[0] for forward in forwards) == inbound_ids
    other = {a: (BOB_PROXY, b) for a, b in PEOPLE} | {b: (ALICE_PROXY, a) for a, b in PEOPLE}
    for message_id, status, sender, recipient in forwards:
        assert status == Message.Status.QUEUED
        assert (sender, recipient) == other["+" + webhooks[message_id]["form"]["msisdn"]]
