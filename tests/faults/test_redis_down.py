"""Redis down with Celery (issue 10): the API and the webhooks keep answering, and every
message queued during the outage is delivered exactly once when Redis is back.

Real processes: a private redis-server, gunicorn as the Procfile runs it and a Celery worker,
all on the PostgreSQL test database (a child process cannot see SQLite's in-memory one).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import pytest
import requests
from django.db.models import F
from rest_framework.authtoken.models import Token

from smsproxy import celery_app
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.queue import REDISPATCH_AFTER
from smsproxy.sandbox.models import SandboxMessage
from tests.faults.processes import (
    RedisServer,
    child_database_url,
    child_env,
    children,
    gunicorn,
    venv_tool,
    wait_until,
)
from tests.proxy.fixtures import ALICE, ALICE_PROXY, BOB, BOB_PROXY, INBOUND_URL, conversation_make
from tests.proxy.outbox.helpers import celery_broker

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

API_URL = "/api/conversations/"
SWEEP_TASK = "smsproxy.proxy.outbox_sweep"


def outbound() -> list[Message]:
    return list(Message.objects.filter(direction=Message.Direction.OUTBOUND).order_by("pk"))


def sandbox_sends() -> Counter[str]:
    return Counter(SandboxMessage.objects.values_list("client_ref", flat=True))


def test_redis_down_the_api_and_webhooks_answer_and_delivery_resumes_once(
    tmp_path: Path, django_user_model
) -> None:
    database_url = child_database_url()
    user = django_user_model.objects.create_user(username="marketplace", password="unused-pw-1")
    token = Token.objects.create(user=user)
    conversation_make()  # Alice and Bob, live: the webhooks below are routed and forwarded

    with children(tmp_path) as start:
        redis = RedisServer(start, tmp_path)
        redis.up()
        env = child_env(DATABASE_URL=database_url, CELERY_BROKER_URL=redis.url)
        base_url = gunicorn(start, env=env, workers=2)
        http = requests.Session()
        http.headers["Authorization"] = f"Token {token.key}"
        answers: list[tuple[str, int]] = []

        def call(method: str, path: str, **kwargs) -> requests.Response:
            response = http.request(method, base_url + path, timeout=20, **kwargs)
            answers.append((f"{method} {path}", response.status_code))
            return response

        def inbound(message_id: str, sender: str, proxy_number: str, text: str) -> int:
            form = {
                "msisdn": sender.removeprefix("+"),
                "to": proxy_number.removeprefix("+"),
                "messageId": message_id,
                "text": text,
                "type": "text",
                "message-timestamp": "2026-11-24 20:00:00",
            }
            return call("POST", INBOUND_URL, data=form).status_code

        assert call("GET", API_URL).status_code == HTTPStatus.OK  # throttled through Redis

        redis.down()

        assert call("GET", API_URL).status_code == HTTPStatus.OK
        created = call(
            "POST",
            API_URL,
            json={
                "participants": [
                    {"number": "+447700900601", "name": "Carol"},
                    {"number": "+447700900602", "name": "Dan"},
                ],
                "reference": "during-the-outage",
            },
        )
        assert created.status_code == HTTPStatus.CREATED, created.text
        assert call("GET", f"{API_URL}{created.json()['id']}/").status_code == HTTPStatus.OK
        assert inbound("0A00000000REDIS01", ALICE, ALICE_PROXY, "Hi Bob") == HTTPStatus.OK
        assert inbound("0A00000000REDIS02", BOB, BOB_PROXY, "Hi Alice") == HTTPStatus.OK
        assert inbound("0A00000000REDIS03", ALICE, ALICE_PROXY, "On my way") == HTTPStatus.OK
        # Vonage's retry of a webhook it thinks was lost.
        assert inbound("0A00000000REDIS03", ALICE, ALICE_PROXY, "On my way") == HTTPStatus.OK
        assert [answer for answer in answers if answer[1] >= 500] == []

        during_outage = outbound()
        # Two intro SMS of the new conversation and three forwards, each once; none sent yet.
        assert len(during_outage) == 5
        assert {message.status for message in during_outage} == {Message.Status.QUEUED}
        assert sandbox_sends() == Counter()

        redis.up()  # an empty Redis on the same port: the outage's hand-offs are not in it
        worker = start(
            "celery-worker",
            [venv_tool("celery"), "-A", "smsproxy", "worker", "--pool", "solo", "-l", "INFO"],
            env,
        )
        wait_until(lambda: "ready." in worker.output(), seconds=60, what="the Celery worker")

        # The on-commit hand-off works again at once.
        assert inbound("0A00000000REDIS04", BOB, BOB_PROXY, "See you") == HTTPStatus.OK
        after_outage = Message.objects.get(forwarded_from__vonage_message_id="0A00000000REDIS04")
        wait_until(
            lambda: sandbox_sends()[str(after_outage.pk)],
            seconds=60,
            what="the forward queued after the outage to be sent",
        )
        # Nothing but the sweep takes up what the outage left queued.
        assert Message.objects.filter(
            pk__in=[message.pk for message in during_outage], status=Message.Status.QUEUED
        ).count() == len(during_outage)

        # The sweep re-dispatches rows left queued for REDISPATCH_AFTER: let that time pass,
        # then beat's task runs on the worker, twice (beat keeps running it).
        Message.objects.filter(pk__in=[message.pk for message in during_outage]).update(
            updated_at=F("updated_at") - REDISPATCH_AFTER - timedelta(seconds=1)
        )
        with celery_broker(redis.url):
            celery_app.send_task(SWEEP_TASK)
            wait_until(
                lambda: all(sandbox_sends()[str(message.pk)] for message in during_outage),
                seconds=60,
                what="every message queued during the outage to be sent",
            )
            celery_app.send_task(SWEEP_TASK)
            wait_until(
                lambda: worker.output().count(f"Task {SWEEP_TASK}[") >= 4,  # received, succeeded
                seconds=60,
                what="the second sweep to finish",
            )

        assert [answer for answer in answers if answer[1] >= 500] == []
        expected = {str(message.pk) for message in [*during_outage, after_outage]}
        assert sandbox_sends() == Counter({client_ref: 1 for client_ref in expected})
        assert {message.status for message in outbound()} == {Message.Status.SENT}
        assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 4
