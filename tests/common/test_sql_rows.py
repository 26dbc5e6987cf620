"""The hand-written statements' shared pieces (SQLite and, with DATABASE_URL, PostgreSQL):
multi-row and skip-on-conflict inserts, rows turned back into instances, and the API's token
lookup, which must answer exactly as DRF's own TokenAuthentication."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from smsproxy.common.inserts import row_insert_or_skip, rows_insert
from smsproxy.common.rows import model_columns
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from tests.factories import VirtualNumberFactory

pytestmark = pytest.mark.django_db

LIVE_ROUTE = '("real_number", "proxy_number_id") WHERE "active"'


def test_rows_insert_writes_every_row_in_one_statement_with_its_key(
    django_assert_num_queries: Any,
) -> None:
    conversation = Conversation.objects.create()
    messages = [
        Message(
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
            conversation=conversation,
            sender="+447700900001",
            recipient=f"+44770090050{index}",
            text=f"text {index}",
        )
        for index in range(3)
    ]
    with django_assert_num_queries(1):
        saved = rows_insert(messages)

    assert saved == messages
    for message in saved:
        stored = Message.objects.get(pk=message.pk)
        assert (stored.recipient, stored.text) == (message.recipient, message.text)
        assert stored.created_at == message.created_at  # auto_now_add filled in by the field
        assert not message._state.adding
    assert rows_insert([]) == []


def test_row_insert_or_skip_skips_a_taken_route_and_raises_for_other_constraints() -> None:
    number = VirtualNumberFactory.create()
    conversation = Conversation.objects.create()

    def participant(real_number: str) -> Participant:
        return Participant(conversation=conversation, real_number=real_number, proxy_number=number)

    first = row_insert_or_skip(participant("+447700900500"), conflict=LIVE_ROUTE)
    assert first is not None and first.pk is not None
    assert row_insert_or_skip(participant("+447700900500"), conflict=LIVE_ROUTE) is None
    assert Participant.objects.count() == 1
    # An inactive row does not hold the route: the partial index only covers active ones.
    Participant.objects.filter(pk=first.pk).update(active=False)
    again = row_insert_or_skip(participant("+447700900500"), conflict=LIVE_ROUTE)
    assert again is not None and again.pk != first.pk
    # The E.164 check is not the conflict target: it still raises.
    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert_or_skip(participant("not-a-number"), conflict=LIVE_ROUTE)


def test_model_columns_convert_the_values_as_the_orm_does() -> None:
    released_at = timezone.now() - timedelta(days=1)
    number = VirtualNumberFactory.create(
        monthly_cost=Decimal("1.2500"),
        reserved=True,
        status=VirtualNumber.Status.RELEASED,
        released_at=released_at,
    )
    columns = model_columns(VirtualNumber, "n")
    table = connection.ops.quote_name(VirtualNumber._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql} FROM {table} n WHERE n.id = %s", [number.pk])
        row = cursor.fetchone()

    built = columns.instance(row)
    stored = VirtualNumber.objects.get(pk=number.pk)
    assert columns.width == len(VirtualNumber._meta.concrete_fields)
    for field in VirtualNumber._meta.concrete_fields:
        assert getattr(built, field.attname) == getattr(stored, field.attname), field.name
    assert built.reserved is True and built.monthly_cost == Decimal("1.2500")
    assert built.released_at == released_at


# --- The token lookup ---------------------------------------------------------------------------


def conversations_status(token: str) -> tuple[int, dict[str, Any]]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/conversations/")
    return response.status_code, response.json()


def test_a_valid_token_authenticates_its_user(django_assert_num_queries: Any) -> None:
    user = get_user_model().objects.create_user(username="market", password="unused-123")
    token = Token.objects.create(user=user)
    assert conversations_status(token.key)[0] == HTTPStatus.OK
    with django_assert_num_queries(2):  # the token with its user, in one; the count (0)
        assert conversations_status(token.key)[0] == HTTPStatus.OK


def test_an_unknown_token_and_an_inactive_user_are_refused_as_drf_refuses_them() -> None:
    user = get_user_model().objects.create_user(username="market", password="unused-123")
    token = Token.objects.create(user=user)

    status, body = conversations_status("0" * 40)
    assert status == HTTPStatus.UNAUTHORIZED
    assert "Invalid token." in str(body)

    user.is_active = False
    user.save(update_fields=["is_active"])
    status, body = conversations_status(token.key)
    assert status == HTTPStatus.UNAUTHORIZED
    assert "User inactive or deleted." in str(body)
