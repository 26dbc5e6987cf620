"""The first conversations a freshly started web server opens, many at once (bench/RESULTS.md:
`make bench` logged one 500 on `POST /api/conversations/` during its first concurrent creations).

gunicorn as the Procfile runs it — gthread, 2 workers of 4 threads — on the PostgreSQL test
database, just started: each worker's first creations run the code that is built or loaded on
first use (the token lookup's and the assignment's statements, the provider, the phone
metadata, the database drivers' adapters) in all its threads at once. Sixteen clients, released
together, each open a conversation between two new people: every one is answered 201 and the
server logs no error.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from smsproxy.proxy.models import Conversation
from tests.factories import VirtualNumberFactory
from tests.faults.processes import Child, child_database_url, child_env, children, gunicorn

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

CLIENTS = 16


def test_a_fresh_server_opens_its_first_conversations_at_once(tmp_path: Path) -> None:
    database_url = child_database_url()
    VirtualNumberFactory.create_batch(4)
    user = get_user_model().objects.create_user(username="marketplace")
    token = Token.objects.create(user=user).key
    with children(tmp_path) as start:
        started: list[Child] = []

        def start_kept(*args: Any) -> Child:
            started.append(start(*args))
            return started[-1]

        env = child_env(DATABASE_URL=database_url, DJANGO_DEBUG="0", DJANGO_SECURE_SSL_REDIRECT="0")
        base_url = gunicorn(start_kept, env=env, workers=2, threads=4)
        together = threading.Barrier(CLIENTS, timeout=30)
        answers: list[int | str] = []
        lock = threading.Lock()

        def open_one(index: int) -> None:
            people = [{"number": f"+447700900{600 + 2 * index + side}"} for side in (0, 1)]
            together.wait()
            try:
                answer: int | str = requests.post(
                    f"{base_url}/api/conversations/",
                    json={"participants": people, "intro": False},
                    headers={"Authorization": f"Token {token}"},
                    timeout=60,
                ).status_code
            except requests.RequestException as error:
                answer = repr(error)
            with lock:
                answers.append(answer)

        clients = [threading.Thread(target=open_one, args=(i,)) for i in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=90)
        log = started[0].output()

    assert answers == [201] * CLIENTS, (answers, log[-5000:])
    assert "Internal Server Error" not in log, log[-5000:]
    assert Conversation.objects.count() == CLIENTS
