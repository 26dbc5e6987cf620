"""Non-trivial reads of conversations and participants."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    DateTimeField,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.usage import LiveUse
from smsproxy.proxy.models import Conversation, Event, Message, Participant

# A number this real number used within this window counts as "used recently" (rule 3): a late
# reply to an old thread would otherwise reach a new partner on the same proxy number.
RECENT_USE_WINDOW = timedelta(days=30)


def live_conversation_q(*, prefix: str = "", now: datetime | None = None) -> Q:
    """Conversations that route messages: active and not past `expires_at`.

    An expired conversation is dead from `expires_at` on, before the sweep closes it.
    `prefix` points at the conversation from another model ("conversation__").
    """
    now = now or timezone.now()
    return Q(**{f"{prefix}status": "active"}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def participant_live_list(*, now: datetime | None = None) -> QuerySet[Participant]:
    """Participants whose conversation is live right now."""
    return Participant.objects.filter(active=True).filter(
        live_conversation_q(prefix="conversation__", now=now)
    )


def participant_route_get(*, sender: str, proxy_number: str) -> Participant | None:
    """Rule 2: the live participant whose real number texted this proxy number, with its
    conversation and `partner` (the conversation's other participant, with the msisdn of its
    proxy number; None if there is none).

    One statement on the (real_number, proxy_number) index of live participants, joined to the
    number by its unique msisdn and to the partner by the conversation. It is the webhook's hot
    path, so its SQL is written once per process instead of being built by the ORM (and the
    partner fetched by a second query) on every request.
    """
    sql, converters = _route_plan()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [sender, proxy_number, Conversation.Status.ACTIVE.value, now])
        row = cursor.fetchone()
    if row is None:
        return None
    values = [_convert(value, *column) for value, column in zip(row, converters, strict=True)]
    participant_fields = _field_names(Participant)
    conversation_fields = _field_names(Conversation)
    db = connection.alias
    size = len(participant_fields)
    route = Participant.from_db(db, participant_fields, values[:size])
    route.conversation = Conversation.from_db(
        db, conversation_fields, values[size : size + len(conversation_fields)]
    )
    partner_values = values[size + len(conversation_fields) : -2]
    route.partner = None
    if partner_values[0] is not None:
        partner = Participant.from_db(db, participant_fields, partner_values)
        partner.proxy_number = VirtualNumber.from_db(db, ["id", "msisdn"], values[-2:])
        route.partner = partner
    return route


def _field_names(model: type[Participant] | type[Conversation]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


def _convert(value: object, column: Any, converters: list[Any]) -> object:
    for converter in converters:
        value = converter(value, column, connection)
    return value


@cache
def route_sql_from(*, sender: str, recipient: str, status: str, now: str) -> str:
    """Rule 2 in SQL, from FROM to LIMIT: the live participant `sender` texting our number
    `recipient` (p, its number n, the conversation c, the other participant o and o's number
    n2). The arguments are the statement's parameter placeholders ("%s" or "%(name)s");
    `status` stands for the active status, `now` for the time. Shared by `participant_route_get`
    and the webhook's one statement on PostgreSQL (services/inbound_statement.py), so the
    routing rule is written once."""
    quote = connection.ops.quote_name
    participant = quote(Participant._meta.db_table)
    number = quote(VirtualNumber._meta.db_table)
    # Only the models' own table and column names are interpolated; the values are parameters.
    return (
        f"FROM {participant} p "
        f"JOIN {number} n ON n.id = p.proxy_number_id "
        f"JOIN {quote(Conversation._meta.db_table)} c ON c.id = p.conversation_id "
        f"LEFT JOIN {participant} o ON o.conversation_id = p.conversation_id AND o.id <> p.id "
        f"LEFT JOIN {number} n2 ON n2.id = o.proxy_number_id "
        f"WHERE p.active AND p.real_number = {sender} AND n.msisdn = {recipient} "
        f"AND c.status = {status} "
        f"AND (c.expires_at IS NULL OR c.expires_at > {now}) "
        "ORDER BY p.conversation_id, p.id, o.id LIMIT 1"
    )


def _route_plan() -> tuple[str, list[tuple[Any, list[Any]]]]:
    """participant_route_get's statement, from the models' own tables and columns, and the
    database converters of each column it selects (as the ORM would apply them)."""
    quote = connection.ops.quote_name
    selected: list[tuple[str, Any]] = []

    def columns(alias: str, model: type[Any], names: list[str] | None = None) -> str:
        fields = [
            field
            for field in model._meta.concrete_fields
            if names is None or field.attname in names
        ]
        selected.extend((alias, field) for field in fields)
        return ", ".join(f"{alias}.{quote(field.column)}" for field in fields)

    select = ", ".join(
        [
            columns("p", Participant),
            columns("c", Conversation),
            columns("o", Participant),
            columns("n2", VirtualNumber, ["id", "msisdn"]),
        ]
    )
    sql = f"SELECT {select} " + route_sql_from(sender="%s", recipient="%s", status="%s", now="%s")
    converters = []
    for alias, field in selected:
        column = field.get_col(alias)
        backend_converters = connection.ops.get_db_converters(column)
        converters.append((column, backend_converters + column.get_db_converters(connection)))
    return sql, converters


def conversation_is_live(*, conversation: Conversation, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return conversation.status == Conversation.Status.ACTIVE and (
        conversation.expires_at is None or conversation.expires_at > now
    )


def conversation_close_reason(
    *, conversation: Conversation, now: datetime | None = None
) -> str | None:
    """Why a conversation no longer routes: its recorded reason, `expired` for one past its
    expiry that the sweep has not closed yet, None while it is live."""
    if conversation_is_live(conversation=conversation, now=now):
        return None
    return conversation.close_reason or Conversation.CloseReason.EXPIRED


def _feature_q(feature: str) -> Q:
    """`features` is a comma-joined list: match the whole item, not a substring of one."""
    return (
        Q(features=feature)
        | Q(features__startswith=f"{feature},")
        | Q(features__endswith=f",{feature}")
        | Q(features__contains=f",{feature},")
    )


def assignable_features_q() -> Q:
    """Numbers with what a conversation needs: SMS, and calls too (VOICE) with PROXY_VOICE."""
    needed = _feature_q("SMS")
    if settings.PROXY_VOICE:
        needed &= _feature_q("VOICE")
    return needed


def proxy_number_last_used_with(*, real_number: str, other_real_number: str) -> int | None:
    """The proxy number `real_number` had in its latest conversation with `other_real_number`.

    The latest is the one that ended last (a live one first): a reopened old conversation is
    more recent than a newer one closed before it.
    """
    return (
        Participant.objects.filter(
            real_number=real_number,
            conversation__participants__real_number=other_real_number,
        )
        .annotate(
            ended_at=Coalesce(
                "conversation__closed_at",
                "conversation__expires_at",
                "conversation__created_at",
                output_field=DateTimeField(),
            )
        )
        .order_by(F("conversation__closed_at").desc(nulls_first=True), "-ended_at", "-pk")
        .values_list("proxy_number_id", flat=True)
        .first()
    )


def participant_expired_route_list(
    *, real_number: str, proxy_number: VirtualNumber, now: datetime | None = None
) -> QuerySet[Participant]:
    """Participants still flagged active on this route although their conversation expired.

    They hold the (real number, proxy number) unique slot until the expiry sweep runs.
    """
    return (
        Participant.objects.filter(active=True, real_number=real_number, proxy_number=proxy_number)
        .exclude(live_conversation_q(prefix="conversation__", now=now))
        .select_related("conversation")
    )


def conversation_list(
    *, status: str = "", reference: str = "", number: str = "", now: datetime | None = None
) -> QuerySet[Conversation]:
    """Conversations for the API, newest first, with participants and proxy numbers prefetched.

    `status` "active" means live (an expired conversation the sweep has not closed yet counts as
    closed); `number` is an E.164 real number matching either participant.
    """
    queryset = Conversation.objects.prefetch_related(
        Prefetch(
            "participants",
            queryset=Participant.objects.select_related("proxy_number").order_by("id"),
        )
    ).order_by("-created_at", "-id")
    if status == Conversation.Status.ACTIVE:
        queryset = queryset.filter(live_conversation_q(now=now))
    elif status == Conversation.Status.CLOSED:
        queryset = queryset.exclude(live_conversation_q(now=now))
    if reference:
        queryset = queryset.filter(reference=reference)
    if number:
        queryset = queryset.filter(
            Exists(Participant.objects.filter(conversation=OuterRef("pk"), real_number=number))
        )
    return queryset


def conversation_get(
    *, public_id: str | uuid.UUID, with_participants: bool = True
) -> Conversation | None:
    """The conversation with this public id, or None (also for a malformed id)."""
    try:
        key = public_id if isinstance(public_id, uuid.UUID) else uuid.UUID(str(public_id))
    except ValueError:
        return None
    queryset = conversation_list() if with_participants else Conversation.objects.all()
    return queryset.filter(public_id=key).first()


def conversation_message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """Every message of a conversation, oldest first."""
    return Message.objects.filter(conversation=conversation).order_by("created_at", "id")


def event_list(*, after: Event | None = None) -> QuerySet[Event]:
    """Events in the order they were written (newest last); only those after `after`."""
    queryset = Event.objects.order_by("pk")
    if after is not None:
        queryset = queryset.filter(pk__gt=after.pk)
    return queryset


def number_live_use_list(numbers: Sequence[VirtualNumber]) -> dict[int, list[LiveUse]]:
    """The conversations whose active participants use `numbers` (what a release would close).

    Registered with the numbers app (`smsproxy.numbers.usage`) in ProxyConfig.ready. Active
    participants are the numbers' stored load: an expired conversation the sweep has not closed
    yet still holds its number and is named too. Two queries, whatever the number of numbers.
    """
    on_numbers = Participant.objects.filter(
        proxy_number__in=[number.pk for number in numbers], active=True
    ).values_list("proxy_number_id", "conversation_id")
    conversation_ids = {conversation_id for _, conversation_id in on_numbers}
    conversations = {
        conversation.pk: conversation
        for conversation in Conversation.objects.filter(pk__in=conversation_ids)
        .prefetch_related("participants")
        .order_by("created_at", "pk")
    }
    uses: dict[int, list[LiveUse]] = {}
    for number_id, conversation_id in sorted(set(on_numbers)):
        conversation = conversations[conversation_id]
        names = " ↔ ".join(
            participant.name or f"participant #{participant.pk}"
            for participant in conversation.participants.all()
        )
        use = LiveUse(
            conversation_pk=conversation.pk,
            conversation_id=str(conversation.public_id),
            reference=conversation.reference,
            participants=names,
        )
        if use not in uses.setdefault(number_id, []):
            uses[number_id].append(use)
    return uses
