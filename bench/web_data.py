"""The HTTP bench's data, in the bench process (Django set up on the throwaway database).

Live conversations are built with set-based SQL on PostgreSQL (`INSERT ... SELECT
generate_series`), as `bench.common` describes them (conversation i between person i on pool
number i mod P and person i + 1 on number (i + P/2) mod P), with every column the services
write: the conversation (a new public_id, active, no expiry), its two participants (active,
country GB) and rule 3's history (one NumberUse row per real number and proxy number); then each
number's stored load is recounted by the product's own `number_loads_recount` and the tables are
vacuumed and analysed. No intro SMS are made: in a built conversation they were sent long ago.

Request bodies are made here too (signed with the settings' secret, as Vonage signs), and the
checks that every answered request was stored once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count

from bench.common import POOL_FIRST, analyze, pool_build
from smsproxy.gateway.signatures import sign_params
from smsproxy.gateway.webhooks import inbound_sms_params

POOL_SIZE = 100
WEBHOOK_PATH = "/webhooks/vonage/inbound-sms/"
BARE_PATH = "/bench/bare/"
CREATE_PATH = "/api/conversations/"
TEXT = "On my way, 10 minutes"

# One statement per chunk: the conversations, then their two participants from the ids the
# first INSERT returns, then the participants' NumberUse rows.
_BUILD_SQL = """
WITH pool AS (
    SELECT id, (substr(msisdn, 2)::bigint - %(pool_first)s) AS pool_index
    FROM numbers_virtualnumber
), conversations AS (
    INSERT INTO proxy_conversation
        (public_id, reference, status, created_at, expires_at, ttl, closed_at, close_reason)
    SELECT gen_random_uuid(), 'listing-' || i, 'active', now(), NULL, 0, NULL, ''
    FROM generate_series(%(start)s, %(stop)s - 1) AS i
    RETURNING id, substr(reference, 9)::bigint AS i, created_at
), participants AS (
    INSERT INTO proxy_participant
        (conversation_id, name, real_number, country, proxy_number_id, active, created_at)
    SELECT c.id,
           CASE side WHEN 0 THEN 'Guest ' ELSE 'Host ' END || c.i,
           '+4475' || lpad((c.i + side)::text, 8, '0'),
           'GB',
           pool.id,
           true,
           c.created_at
    FROM conversations AS c
    CROSS JOIN (VALUES (0), (1)) AS sides (side)
    JOIN pool ON pool.pool_index = CASE side
        WHEN 0 THEN c.i %% %(pool_size)s
        ELSE (c.i + %(pool_size)s / 2) %% %(pool_size)s END
    RETURNING real_number, proxy_number_id, created_at
)
INSERT INTO proxy_numberuse (real_number, proxy_number_id, last_used_at)
SELECT real_number, proxy_number_id, created_at FROM participants
ON CONFLICT (real_number, proxy_number_id) DO NOTHING
"""


def pool_prepare() -> None:
    """Migrate the empty database and rent (in the sandbox sense) the pool."""
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    pool_build(size=POOL_SIZE)


def conversations_grow(
    *, start: int, stop: int, chunk: int = 100_000, on_chunk: Callable[[int], None] | None = None
) -> None:
    """Add live conversations `start` .. `stop - 1` (see the module docstring).

    A large load runs with the tables' plain indexes dropped and rebuilt after it (an index
    built in one sort is much faster than one grown row by row). Unique indexes stay, the
    partial one of live routes included: the server is still running, and a creation it was
    finishing when the load began (wrk stops with requests in flight) waits behind the DROP's
    lock, then runs its `ON CONFLICT (real_number, proxy_number_id) WHERE active` against a
    table without that index and fails (the five 500s of the make bench run of 2026-12-01,
    22:59, all "no unique or exclusion constraint matching the ON CONFLICT specification").
    """
    from smsproxy.proxy.services.assignment import number_loads_recount

    if connection.vendor != "postgresql":
        raise SystemExit("The HTTP bench builds its data with PostgreSQL's SQL.")
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = bool(cursor.fetchone()[0])
    indexes = _plain_indexes_drop() if stop - start >= 200_000 else []
    for chunk_start in range(start, stop, chunk):
        chunk_stop = min(chunk_start + chunk, stop)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            if superuser:
                # The foreign keys' per-row triggers skipped (the rows reference what this very
                # statement inserted, or the pool).
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(
                _BUILD_SQL,
                {
                    "pool_first": POOL_FIRST,
                    "start": chunk_start,
                    "stop": chunk_stop,
                    "pool_size": POOL_SIZE,
                },
            )
        if on_chunk is not None:
            on_chunk(chunk_stop)
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for definition in indexes:
            cursor.execute(definition)
    number_loads_recount()
    analyze()


def _plain_indexes_drop() -> list[str]:
    """Drop the built tables' non-unique indexes that back no constraint; returns their
    definitions."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index AS i
            WHERE i.indrelid IN ('proxy_conversation'::regclass, 'proxy_participant'::regclass,
                                 'proxy_numberuse'::regclass)
              AND NOT i.indisunique
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
            """
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
    return [definition for _, definition in indexes]


def api_token() -> str:
    """An API user's token (DRF's TokenAuthentication, as the marketplace authenticates)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(username="bench-marketplace")
    return str(Token.objects.create(user=user).key)


# --- Request bodies -----------------------------------------------------------------------------


def person_of(conversation_index: int, side: int) -> tuple[str, str]:
    """(real number, proxy number) of one participant of built conversation `conversation_index`."""
    person = conversation_index + side
    pool_index = (conversation_index + side * (POOL_SIZE // 2)) % POOL_SIZE
    return f"+4475{person:08d}", f"+{POOL_FIRST + pool_index}"


def webhook_body(*, sender: str, recipient: str, message_id: str, timestamp: int) -> bytes:
    """Vonage's inbound-SMS form, signed as Vonage signs it with the settings' secret."""
    from urllib.parse import urlencode

    params = inbound_sms_params(
        sender=sender, recipient=recipient, text=TEXT, message_id=message_id
    )
    signed = sign_params(
        params,
        secret=settings.VONAGE_SIGNATURE_SECRET,
        method=settings.VONAGE_SIGNATURE_METHOD,
        timestamp=timestamp,
    )
    return urlencode(signed).encode()


def webhook_bodies(*, prefix: str, count: int, conversations: int, seed: int) -> list[bytes]:
    """`count` signed webhooks, messageIds `prefix`0000000.., each from a random live route."""
    import random

    rng = random.Random(seed)
    timestamp = int(time.time())
    bodies = []
    for index in range(count):
        sender, recipient = person_of(rng.randrange(conversations), rng.randrange(2))
        bodies.append(
            webhook_body(
                sender=sender,
                recipient=recipient,
                message_id=f"{prefix}{index:07d}",
                timestamp=timestamp,
            )
        )
    return bodies


def creation_bodies(*, prefix: str, count: int, first_person: int) -> list[bytes]:
    """`count` POST /api/conversations/ bodies, each with two numbers no conversation uses."""
    bodies = []
    for index in range(count):
        person = first_person + 2 * index
        participants = [
            {"number": f"+4474{person:08d}", "name": "Guest"},
            {"number": f"+4474{person + 1:08d}", "name": "Host"},
        ]
        body = {"participants": participants, "reference": f"{prefix}{index:07d}"}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


# --- Checks ---------------------------------------------------------------------------------------


def webhooks_check(*, prefix: str, answered: int, in_flight: int) -> tuple[int, list[str]]:
    """(stored, problems): every answered webhook stored once and forwarded (queued) once.

    A request in flight when wrk stopped may be stored without its answer being read, so
    answered <= stored <= answered + in flight.
    """
    from smsproxy.proxy.models import Message

    inbound = Message.objects.filter(vonage_message_id__startswith=prefix)
    stored = inbound.count()
    problems = []
    if not answered <= stored <= answered + in_flight:
        problems.append(
            f"{prefix}: {answered} answered 200 (+{in_flight} in flight), {stored} stored"
        )
    if inbound.exclude(status=Message.Status.RECEIVED).exists():
        problems.append(f"{prefix}: an inbound message not routed")
    forwards = Message.objects.filter(forwarded_from__vonage_message_id__startswith=prefix)
    if forwards.count() != stored:
        problems.append(f"{prefix}: {forwards.count()} forwards for {stored} stored")
    if forwards.values("forwarded_from").annotate(n=Count("id")).filter(n__gt=1).exists():
        problems.append(f"{prefix}: a message forwarded twice")
    return stored, problems


def creations_check(*, prefix: str, answered: int, in_flight: int) -> tuple[int, list[str]]:
    """(created, problems): each answered creation is one conversation with two participants."""
    from smsproxy.proxy.models import Conversation, Participant
    from smsproxy.proxy.services.assignment import number_loads_recount

    created = Conversation.objects.filter(reference__startswith=prefix).count()
    problems = []
    if not answered <= created <= answered + in_flight:
        problems.append(
            f"{prefix}: {answered} answered 201 (+{in_flight} in flight), {created} made"
        )
    participants = Participant.objects.filter(conversation__reference__startswith=prefix).count()
    if participants != 2 * created:
        problems.append(f"{prefix}: {participants} participants for {created} conversations")
    if changed := number_loads_recount():
        problems.append(f"{prefix}: {changed} numbers' stored load was wrong (now recounted)")
    return created, problems


def live_conversations() -> int:
    from smsproxy.proxy.models import Conversation

    return Conversation.objects.filter(status=Conversation.Status.ACTIVE).count()


def delivery_counts() -> dict[str, int]:
    """Outbound messages by status (what the delivery worker did during the run)."""
    from smsproxy.proxy.models import Message

    rows = (
        Message.objects.filter(direction=Message.Direction.OUTBOUND)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {status: n for status, n in rows}


# --- The route lookup: queries and plan --------------------------------------------------------


def webhook_queries(*, conversations: int) -> tuple[list[str], str]:
    """(statements, EXPLAIN ANALYZE of the route lookup) of one signed webhook, in process."""
    from django.db import reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    sender, recipient = person_of(conversations // 2, 1)
    body = webhook_body(
        sender=sender, recipient=recipient, message_id="Q0000001", timestamp=int(time.time())
    )
    statements: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many, context)

    client = Client()
    reset_queries()
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(capture):
        response = client.post(WEBHOOK_PATH, body, content_type="application/x-www-form-urlencoded")
    if response.status_code != 200:
        raise SystemExit(
            f"The in-process webhook answered {response.status_code}: {response.content!r}"
        )
    # The route lookup: on PostgreSQL the webhook's one `WITH` statement (route, inbound row and
    # forward together), elsewhere the route SELECT. EXPLAIN ANALYZE runs it, so inside a
    # transaction rolled back: the plan is the real one and nothing is written twice.
    route = next(
        (sql, params)
        for sql, params in statements
        if sql.lstrip().upper().startswith(("SELECT", "WITH")) and "proxy_participant" in sql
    )
    from django.db import transaction

    class _RolledBack(Exception):
        pass

    plan = ""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + route[0], route[1])
            plan = "\n".join(row[0] for row in cursor.fetchall())
            raise _RolledBack
    except _RolledBack:
        pass
    return [query["sql"] for query in captured.captured_queries], plan
