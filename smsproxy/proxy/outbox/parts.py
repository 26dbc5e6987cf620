"""The parts of an outbound message: one MessagePart per part Vonage accepted, with its receipt.

A long text is split by Vonage: several parts, several message ids, one delivery receipt each.
Two writers create parts, the send's result (`deliver`) and a receipt that came before it
(`receipts`); both call these functions holding the message's row lock, which every writer of
parts takes first, so they never deadlock and never both create one part. A message's status
follows its parts that are not superseded (those of its latest send).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from functools import cache

from django.db import connections, router
from django.utils import timezone

from smsproxy.common.inserts import row_insert_or_skip
from smsproxy.gateway.base import SentPart
from smsproxy.proxy.events.record import event_message_status
from smsproxy.proxy.models import Message, MessagePart

logger = logging.getLogger(__name__)

# Receipt statuses that end a part's life; an intermediate status arriving after one of them
# (receipts can arrive out of order) does not overwrite it.
PART_FINAL = (
    MessagePart.Status.DELIVERED,
    MessagePart.Status.FAILED,
    MessagePart.Status.REJECTED,
    MessagePart.Status.EXPIRED,
)
_PART_FAILURE_TO_MESSAGE = {
    MessagePart.Status.FAILED: Message.Status.FAILED,
    MessagePart.Status.REJECTED: Message.Status.REJECTED,
    MessagePart.Status.EXPIRED: Message.Status.EXPIRED,
}


def message_parts_store(
    *, message: Message, parts: tuple[SentPart, ...], superseded: bool = False
) -> list[MessagePart]:
    """Write the parts Vonage accepted; return the message's parts that are not superseded.

    Call holding the message's row lock. A receipt may have created some of these parts
    already (it came before the send's result was written): one SELECT finds them, with the
    message's other current parts, and they are completed; the rest are inserted in one
    statement. No receipt can add a part of this message between the two (it waits for the
    lock). Skipping a conflicting row (ON CONFLICT DO NOTHING) is a guard only: the one row it
    could meet is a part with the same Vonage id committed for another message in between,
    which Vonage's unique ids rule out; it must not fail the whole write if it happens.
    """
    ids = [sent.message_id for sent in parts]
    found = {part.vonage_message_id: part for part in _parts_current_or_named(message.pk, ids)}
    created = []
    for sent in parts:
        part = found.get(sent.message_id)
        if part is None:
            created.append(
                MessagePart(
                    message=message,
                    vonage_message_id=sent.message_id,
                    price=sent.price,
                    network=sent.network,
                    superseded=superseded,
                )
            )
            continue
        if part.message_id != message.pk:
            logger.error(
                "Vonage message id %s of message %s is already recorded for message %s.",
                sent.message_id,
                message.pk,
                part.message_id,
            )
            continue
        part.price = part.price if part.price is not None else sent.price
        part.network = part.network or sent.network
        part.superseded = superseded
        part.save(update_fields=["price", "network", "superseded"])
    if len(created) == 1:
        # One part, as most SMS are: an INSERT written once, not compiled by the ORM each time.
        row_insert_or_skip(created[0], conflict="(vonage_message_id)")
    elif created:
        MessagePart.objects.bulk_create(created, ignore_conflicts=True)
    return [
        part
        for part in [*found.values(), *created]
        if part.message_id == message.pk and not part.superseded
    ]


def _parts_current_or_named(message_id: int, ids: list[str]) -> list[MessagePart]:
    """The message's parts that are not superseded, and the parts with these Vonage ids, in id
    order: `MessagePart.objects.filter(Q(message_id=..., superseded=False) |
    Q(vonage_message_id__in=ids)).order_by("id")`, with its SQL built once per number of ids
    (the ORM compiled it again for every message sent)."""
    alias = router.db_for_write(MessagePart)
    sql = _parts_sql(connections[alias].vendor, len(ids))
    return list(MessagePart.objects.raw(sql, [message_id, False, *ids], using=alias))


@cache
def _parts_sql(vendor: str, count: int) -> str:
    connection = connections[router.db_for_write(MessagePart)]
    quote = connection.ops.quote_name
    meta = MessagePart._meta
    table = quote(meta.db_table)
    columns = {field.name: str(field.column) for field in meta.concrete_fields}

    def column(name: str) -> str:
        return quote(columns[name])

    selected = ", ".join(map(quote, columns.values()))
    named = f" OR {column('vonage_message_id')} IN ({', '.join(['%s'] * count)})" if count else ""
    # Only the model's own table and column names are interpolated; the values are parameters.
    return (
        f"SELECT {selected} FROM {table}"  # noqa: S608
        f" WHERE ({column('message')} = %s AND {column('superseded')} = %s){named}"
        f" ORDER BY {column('id')}"
    )


def message_status_refresh(
    *, message: Message, parts: Sequence[MessagePart] | None = None
) -> Message:
    """Derive a sent message's status from the receipts of its latest send's parts.

    A message is `delivered` only when every part of its latest send is; a part that failed,
    was rejected or expired fails the message with the receipt's `err-code` kept.

    Call inside a transaction holding the message's row. Only a `sent` message moves: one still
    queued or sending has not recorded its parts yet, and a final status is never undone.
    `parts`: the message's parts that are not superseded, in id order, when the caller has just
    read and written them under that lock (the send's result does); read here otherwise.
    """
    if message.status != Message.Status.SENT:
        return message
    if parts is None:
        parts = list(message.parts.filter(superseded=False).order_by("id"))
    if not parts:
        return message
    failed = next((part for part in parts if part.status in _PART_FAILURE_TO_MESSAGE), None)
    if failed is not None:
        message.status = _PART_FAILURE_TO_MESSAGE[MessagePart.Status(failed.status)]
        message.error_code = failed.error_code
        message.error_text = (
            f"Delivery receipt for part {failed.vonage_message_id}: {failed.status}."
        )
    elif all(part.status == MessagePart.Status.DELIVERED for part in parts):
        message.status = Message.Status.DELIVERED
        message.delivered_at = max(
            (part.receipt_at for part in parts if part.receipt_at), default=timezone.now()
        )
    else:
        return message
    prices = [part.price for part in parts]
    if all(price is not None for price in prices):
        message.price = sum((price for price in prices if price is not None), Decimal(0))
    message.save(
        update_fields=["status", "error_code", "error_text", "delivered_at", "price", "updated_at"]
    )
    event_message_status(message_id=message.pk)
    return message
