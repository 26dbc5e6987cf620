"""The HTTP bench's own logic (bench/web_data.py, bench/web_load.py): the signed bodies it sends
are ones the real webhook accepts and routes, the conversations it builds in SQL are the ones
those bodies name, with consistent loads, and its py-spy summary reads py-spy's raw format.
No timing here: the bench itself runs with `make bench`."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from django.db import connection
from django.test import Client, override_settings

from bench import web_data, web_load
from bench.common import pool_build
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, NumberUse, Participant

SIGNED = {"VONAGE_SIGNATURE_SECRET": "bench-test-secret", "VONAGE_SIGNATURE_METHOD": "sha256"}


def post(body: bytes) -> int:
    response = Client().post(
        web_data.WEBHOOK_PATH, body, content_type="application/x-www-form-urlencoded"
    )
    return int(response.status_code)


def build_with_orm(index: int) -> Conversation:
    """Conversation `index` of the bench's layout, made with the ORM (for SQLite)."""
    conversation = Conversation.objects.create(reference=f"listing-{index}")
    for side in (0, 1):
        real_number, proxy_number = web_data.person_of(index, side)
        Participant.objects.create(
            conversation=conversation,
            real_number=real_number,
            country="GB",
            proxy_number=VirtualNumber.objects.get(msisdn=proxy_number),
        )
    return conversation


@pytest.mark.django_db
@override_settings(**SIGNED)
def test_a_bench_body_passes_the_signature_check_and_is_routed() -> None:
    pool_build(size=web_data.POOL_SIZE)
    conversation = build_with_orm(7)
    sender, recipient = web_data.person_of(7, 1)
    body = web_data.webhook_body(
        sender=sender, recipient=recipient, message_id="T-1", timestamp=int(time.time())
    )
    assert post(body) == 200
    inbound = Message.objects.get(vonage_message_id="T-1")
    assert (inbound.status, inbound.conversation_id) == (Message.Status.RECEIVED, conversation.pk)
    assert Message.objects.filter(forwarded_from=inbound).count() == 1
    # The signature covers the parameters: the same body with another text is refused.
    forged = {**dict(parse_qsl(body.decode())), "messageId": "T-2", "text": "changed"}
    assert post(urlencode(forged).encode()) == 401


@override_settings(**SIGNED)
def test_bench_bodies_have_unique_message_ids_and_name_live_routes() -> None:
    bodies = web_data.webhook_bodies(prefix="H001-", count=300, conversations=40, seed=3)
    params = [dict(parse_qsl(body.decode())) for body in bodies]
    assert len({p["messageId"] for p in params}) == 300
    assert all(p["messageId"].startswith("H001-") and p["sig"] for p in params)
    routes = {web_data.person_of(i, side) for i in range(40) for side in (0, 1)}
    assert {("+" + p["msisdn"], "+" + p["to"]) for p in params} <= routes
    # The Lua script reads one body per line.
    assert not any(b"\n" in body for body in bodies)


@pytest.mark.django_db(transaction=True)
@override_settings(**SIGNED)
def test_the_sql_build_writes_what_the_bodies_route_to_with_consistent_loads() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("The bench builds with PostgreSQL's SQL.")
    pool_build(size=web_data.POOL_SIZE)
    web_data.conversations_grow(start=0, stop=30, chunk=20)
    web_data.conversations_grow(start=30, stop=60)
    assert Conversation.objects.filter(status=Conversation.Status.ACTIVE).count() == 60
    assert Participant.objects.filter(active=True).count() == 120
    assert NumberUse.objects.count() == 120
    for number in VirtualNumber.objects.all():
        assert number.assigned_participants == number.participants.filter(active=True).count()
    sender, recipient = web_data.person_of(42, 0)
    body = web_data.webhook_body(
        sender=sender, recipient=recipient, message_id="T-3", timestamp=int(time.time())
    )
    assert post(body) == 200
    routed = Message.objects.get(vonage_message_id="T-3")
    assert routed.conversation is not None and routed.conversation.reference == "listing-42"


def test_the_profile_summary_reads_py_spy_raw_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (threading.py:1);handle (/x/site-packages/django/core/handlers/base.py:9);"
        "wait (/x/site-packages/psycopg/connection.py:5) 30\n"
        "run (threading.py:1);handle (/x/site-packages/django/core/handlers/base.py:12) 10\n"
    )
    samples, own, inclusive = web_load.py_spy_top(raw)
    assert samples == 40
    assert own[0] == ("wait (psycopg/connection.py)", 75.0)
    assert inclusive[0] == ("handle (django/core/handlers/base.py)", 100.0)


def test_the_server_is_the_procfile_web_command_bound_to_localhost() -> None:
    command = web_load.procfile_command("web", port=18999)
    assert Path(command[0]).name == "gunicorn"
    assert "127.0.0.1:18999" in command and "0.0.0.0:8000" not in " ".join(command)


def test_the_servers_errors_are_read_with_their_traceback() -> None:
    from bench.web import error_blocks

    log = (
        "2026-12-01 19:53:49,800 INFO smsproxy.proxy.webhooks: Inbound SMS routed.\n"
        "2026-12-01 19:53:49,902 ERROR django.request: Internal Server Error: /api/x/\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in f\n'
        "ValueError: boom\n"
        "2026-12-01 19:53:50,001 INFO smsproxy.proxy.webhooks: Inbound SMS routed.\n"
        "  an indented line of an INFO record\n"
    )

    [block] = error_blocks(log)

    assert block[0].endswith("Internal Server Error: /api/x/")
    assert block[1:] == [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in f',
        "ValueError: boom",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_large_build_keeps_the_unique_indexes_the_running_server_needs() -> None:
    """A creation still in flight when a large build starts runs its ON CONFLICT against the
    live-route index: dropping that index made five creations answer 500 in make bench."""
    if connection.vendor != "postgresql":
        pytest.skip("The bench builds with PostgreSQL's SQL.")
    dropped = web_data._plain_indexes_drop()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indisunique AND "
                "indrelid = 'proxy_participant'::regclass"
            )
            unique = {name for (name,) in cursor.fetchall()}
        assert "participant_live_route_unique" in unique
        assert dropped  # the plain ones still go
        assert not any("UNIQUE" in definition for definition in dropped)
    finally:
        with connection.cursor() as cursor:
            for definition in dropped:
                cursor.execute(definition)
