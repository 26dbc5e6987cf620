"""Writing outbound SMS: every one is first a `queued` Message row (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.common.inserts import rows_insert
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.outbox import dispatch

# How long a due queued row may sit untouched before the sweep hands it to Celery again.
REDISPATCH_AFTER = timedelta(seconds=60)


def message_queue_outbound(
    *,
    sender: str,
    recipient: str,
    text: str,
    purpose: str = Message.Purpose.CONVERSATION,
    conversation: Conversation | None = None,
    forwarded_from: Message | None = None,
) -> Message:
    """Queue an outbound SMS inside the caller's transaction.

    The row is written with whatever caused it; it is handed to a dispatcher only once that
    transaction commits, so a rolled-back cause never sends anything and a committed one is
    never lost (the outbox sweep picks up rows whose hand-off did not happen).
    """
    return message_queue_outbound_many(
        messages=[
            Message(
                purpose=purpose,
                conversation=conversation,
                sender=sender,
                recipient=recipient,
                text=text,
                forwarded_from=forwarded_from,
            )
        ]
    )[0]


def message_queue_outbound_many(*, messages: Sequence[Message]) -> list[Message]:
    """Queue these outbound SMS (unsaved; their sender, recipient, text, purpose and
    conversation set) in one INSERT, as `message_queue_outbound` queues one."""
    for message in messages:
        message.direction = Message.Direction.OUTBOUND
        message.status = Message.Status.QUEUED
    saved = rows_insert(messages)
    for message in saved:
        message_dispatch_on_commit(message=message)
    return saved


def message_dispatch_on_commit(*, message: Message) -> None:
    """Hand the queued `message`, written in the caller's transaction (or just committed in
    autocommit), to the dispatcher once that transaction commits."""
    # robust: a hand-off that fails is logged and the other callbacks still run (two intro SMS
    # of one conversation); it never raises into the request that committed the row, since the
    # sweep re-dispatches what was committed but not handed over.
    message_id = message.pk
    low_priority = message.purpose == Message.Purpose.OUT_OF_SESSION
    transaction.on_commit(
        lambda: dispatch.message_dispatch(message_id=message_id, low_priority=low_priority),
        robust=True,
    )


def message_due_q(*, now: datetime) -> Q:
    """Messages whose (next) attempt is due at `now`: never scheduled, or scheduled by then."""
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


class Due(NamedTuple):
    """A message due to be sent, and the number it is sent from."""

    message_id: int
    sender: str


def outbox_due(
    *, now: datetime | None = None, limit: int = 100, busy_senders: Collection[str] = ()
) -> list[Due]:
    """Queued outbound messages whose (next) attempt is due: forwards and intros first,
    oldest first, then out-of-session replies (rule 6: replies never delay forwards).

    Messages from `busy_senders` (numbers at their own rate limit) are left out, all of each
    number's alike: they would only be claimed and put back, and they must not fill the batch
    while other numbers' messages wait behind them.

    Two queries rather than one ORDER BY on the purpose: each walks the (status,
    next_attempt_at) index, and the replies are read only when the forwards leave room.
    """
    now = now or timezone.now()
    due = Message.objects.filter(status=Message.Status.QUEUED).filter(message_due_q(now=now))
    if busy_senders:
        due = due.exclude(sender__in=busy_senders)
    reply = Q(purpose=Message.Purpose.OUT_OF_SESSION)
    fields = ("pk", "sender")
    rows = list(due.exclude(reply).order_by("pk").values_list(*fields)[:limit])
    if len(rows) < limit:
        rows += due.filter(reply).order_by("pk").values_list(*fields)[: limit - len(rows)]
    return [Due(message_id, sender) for message_id, sender in rows]


def outbox_redispatch(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Hand due queued rows that nobody picked up to the dispatcher again (the Celery sweep).

    A row is re-dispatched when it has been due for REDISPATCH_AFTER without changing: its
    on-commit hand-off was lost (broker down, process killed after the commit) or its retry
    is due. Touching `updated_at` keeps one row from being enqueued again on every sweep
    while the workers work through a backlog; a duplicate enqueue is harmless anyway (the
    claim lets one through).
    """
    now = now or timezone.now()
    rows = list(
        Message.objects.filter(status=Message.Status.QUEUED, updated_at__lt=now - REDISPATCH_AFTER)
        .filter(message_due_q(now=now))
        .order_by("pk")
        .values_list("pk", "purpose")[:limit]
    )
    ids = [message_id for message_id, _ in rows]
    if ids:
        Message.objects.filter(pk__in=ids, status=Message.Status.QUEUED).update(updated_at=now)
    for message_id, purpose in rows:
        dispatch.message_dispatch(
            message_id=message_id, low_priority=purpose == Message.Purpose.OUT_OF_SESSION
        )
    return ids


RETRYABLE_STATUSES = (Message.Status.FAILED, Message.Status.REJECTED, Message.Status.EXPIRED)


def message_retryable(*, message: Message) -> bool:
    return message.direction == Message.Direction.OUTBOUND and message.status in RETRYABLE_STATUSES


def message_retry(*, message: Message, actor: AbstractBaseUser | None = None) -> Message:
    """Queue a failed outbound message again with a fresh set of attempts (staff's retry).

    The parts of the failed send stay for the record but are superseded: the message's status
    follows the new send's receipts only. Retried by staff (`actor`): written to the message's
    admin history in the same transaction.
    """
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if not message_retryable(message=locked):
            raise ApplicationError(
                f"Only failed outbound messages can be retried; #{locked.pk} is "
                f"{locked.direction} and {locked.status}.",
                code="not_retryable",
            )
        was, attempts, code = locked.status, locked.attempts, locked.error_code
        locked.parts.update(superseded=True)
        locked.status = Message.Status.QUEUED
        locked.attempts = 0
        locked.next_attempt_at = None
        locked.claimed_at = None
        locked.error_code = ""
        locked.error_text = ""
        locked.delivered_at = None
        locked.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "claimed_at",
                "error_code",
                "error_text",
                "delivered_at",
                "updated_at",
            ]
        )
        if actor is not None:
            audit_change(
                actor=actor,
                obj=locked,
                change=f"Retried: status {was} → {locked.status}, attempts {attempts} → "
                f"{locked.attempts}, error code {code or '-'} → -.",
            )
        message_id = locked.pk
        transaction.on_commit(lambda: dispatch.message_dispatch(message_id=message_id), robust=True)
    return locked
