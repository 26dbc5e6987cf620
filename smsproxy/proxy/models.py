"""Conversations between two real numbers, their participants, and every SMS in or out."""

from __future__ import annotations

import re
import uuid

from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    class CloseReason(models.TextChoices):
        API = "api", "Closed through the API"
        EXPIRED = "expired", "Expired"
        STAFF = "staff", "Closed by staff"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.CharField(
        max_length=200, blank=True, db_index=True, help_text="The marketplace's own reference."
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The lifetime it was given, kept for what restarts it: a reopen, and each message when
    # PROXY_TTL_FROM is last_message.
    ttl = models.PositiveIntegerField("TTL (seconds)", default=0, help_text="0 = no expiry.")
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="conversation_closed_consistent",
                condition=(
                    Q(status="active", closed_at__isnull=True, close_reason="")
                    | (Q(status="closed", closed_at__isnull=False) & ~Q(close_reason=""))
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.reference or str(self.public_id)


class Participant(models.Model):
    """One of the two people in a conversation, and the proxy number they text and hear from."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="participants"
    )
    name = models.CharField(max_length=100, blank=True)
    real_number = models.CharField("real number (E.164)", max_length=16)
    country = models.CharField(max_length=2, blank=True)
    proxy_number = models.ForeignKey(
        "numbers.VirtualNumber", on_delete=models.PROTECT, related_name="participants"
    )
    # Mirrors "the conversation is active": a unique constraint cannot look across a join, so
    # the participant row carries the flag that the live-use constraint is conditioned on.
    # Closing a conversation clears it in the same transaction.
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Not a column: the conversation's other participant, set on the routes that
    # `proxy.selectors.participant_route_get` returns (fetched in the same statement).
    partner: Participant | None

    class Meta:
        ordering = ["conversation_id", "id"]
        # Without it, the admin shows people's real numbers masked (smsproxy.common.admin_privacy).
        permissions = [("view_real_numbers", "Can see people's real numbers in the admin")]
        constraints = [
            # Rule 3: one real number never uses one proxy number in two live conversations,
            # or an inbound SMS could not be routed unambiguously. Also the index of rule 2's
            # routing lookup.
            models.UniqueConstraint(
                fields=["real_number", "proxy_number"],
                condition=Q(active=True),
                name="participant_live_route_unique",
            ),
            models.CheckConstraint(
                name="participant_real_number_e164",
                condition=Q(real_number__regex=r"^\+[1-9][0-9]{6,14}$"),
            ),
        ]
        indexes = [
            models.Index(fields=["real_number", "created_at"], name="participant_history_idx"),
            models.Index(fields=["proxy_number", "active"], name="participant_number_load_idx"),
        ]

    def __str__(self) -> str:
        # Names appear in admin titles, breadcrumbs and history, which support staff without
        # `view_real_numbers` read: a participant without a name is shown by its id.
        return f"{self.name or f'participant #{self.pk}'} via {self.proxy_number_id}"


class NumberUse(models.Model):
    """Every proxy number a real number has used, and when it last did (rule 3's history).

    Written by each way a person comes to use a number (assignment, a staff reassignment, a
    reopen) and when the use ends (close, expiry, reassignment away), so "not used recently"
    does not depend on Participant rows, which a reassignment overwrites in place. One row per
    pair, read by the ranking with one lookup on the unique index.
    """

    real_number = models.CharField("real number (E.164)", max_length=16)
    proxy_number = models.ForeignKey(
        "numbers.VirtualNumber", on_delete=models.CASCADE, related_name="+"
    )
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["real_number", "proxy_number"], name="number_use_pair_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.real_number} used {self.proxy_number_id} until {self.last_used_at}"


# The statuses of a call (direction `call`), and those no SMS can have.
CALL_ONLY_STATUSES = (
    "started",
    "ringing",
    "answered",
    "completed",
    "busy",
    "timeout",
    "cancelled",
    "unanswered",
)
CALL_STATUSES = (*CALL_ONLY_STATUSES, "failed", "rejected")
# The statuses an inbound text can have: `rejected` when longer than PROXY_MAX_TEXT_LENGTH,
# `blocked` when the intercept hook refused it.
INBOUND_STATUSES = ("received", "unrouted", "rejected", "blocked")
# Those an outbound message never has.
NOT_OUTBOUND_STATUSES = ("received", "unrouted", *CALL_ONLY_STATUSES)


def one_of(values: tuple[str, ...]) -> str:
    """A regular expression that matches exactly one of `values` (the whole text, no more), in
    PostgreSQL's and in Python's (SQLite's REGEXP) syntax alike.

    In a CHECK constraint it stands for `IN (...)`: PostgreSQL reads and compiles a constraint's
    stored expression again for every INSERT statement, and an IN-list costs it one constant node
    per value, a pattern one (`message_status_matches_direction`: 8,199 characters of node text
    as IN-lists, 4,043 as patterns; ~27 µs of the backend's CPU per INSERT statement against
    ~17 µs). `$` would also match before a final newline in Python; `\\Z` does not.
    """
    return r"\A(?:" + "|".join(re.escape(value) for value in values) + r")\Z"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"
        CALL = "call", "Call"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        UNROUTED = "unrouted", "Unrouted"
        # An inbound text the intercept hook refused (DESIGN.md §11), and its forward.
        BLOCKED = "blocked", "Blocked"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        # A call's (direction `call`; `failed` and `rejected` are shared with SMS).
        STARTED = "started", "Started"
        RINGING = "ringing", "Ringing"
        ANSWERED = "answered", "Answered"
        COMPLETED = "completed", "Completed"
        BUSY = "busy", "Busy"
        TIMEOUT = "timeout", "Timeout"
        CANCELLED = "cancelled", "Cancelled"
        UNANSWERED = "unanswered", "Unanswered"

    class Purpose(models.TextChoices):
        CONVERSATION = "conversation", "Conversation"  # an inbound text, or its forward
        INTRO = "intro", "Introduction"
        OUT_OF_SESSION = "out_of_session", "Out-of-session reply"
        SYSTEM = "system", "System message from the marketplace"

    class Intercept(models.TextChoices):
        """What the intercept hook (DESIGN.md §11) said about a forward; empty: not asked."""

        PASSED = "passed", "Passed"
        REPLACED = "replaced", "Text replaced"
        BLOCKED = "blocked", "Blocked"
        ERROR_FORWARDED = "error_forwarded", "Hook unavailable: forwarded"
        HELD = "held", "Hook unavailable: held"

    direction = models.CharField(max_length=8, choices=Direction.choices)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.CONVERSATION)
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="messages",
    )
    sender = models.CharField(max_length=16)
    recipient = models.CharField(max_length=16)
    text = models.TextField(blank=True)
    # Inbound: Vonage's messageId (unique: a redelivered webhook is stored once). For a
    # concatenated SMS the parts carry their own ids (InboundPart) and this stays empty.
    # Outbound: the ids of the sent parts live in MessagePart.
    # Call: Vonage's conversation_uuid, which both legs of the call share.
    vonage_message_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_text = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the current send attempt claimed the row (status "sending").
    claimed_at = models.DateTimeField(null=True, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    intercept = models.CharField(max_length=16, choices=Intercept.choices, blank=True)
    forwarded_from = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="forwards",
        help_text="The inbound message this outbound message forwards.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Calls only: the two legs' uuids (the caller's into our number, the one connected to the
    # other participant) and the connected call's length in seconds.
    caller_leg_uuid = models.CharField(max_length=64, blank=True)
    callee_leg_uuid = models.CharField(max_length=64, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds (calls).")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                name="message_status_matches_direction",
                # status IN (...) for each direction, written as patterns (see `one_of`).
                condition=(
                    Q(direction="inbound", status__regex=one_of(INBOUND_STATUSES))
                    | (Q(direction="outbound") & ~Q(status__regex=one_of(NOT_OUTBOUND_STATUSES)))
                    | Q(direction="call", status__regex=one_of(CALL_STATUSES))
                ),
            ),
            models.CheckConstraint(
                name="message_forward_is_outbound",
                condition=Q(forwarded_from__isnull=True) | Q(direction="outbound"),
            ),
        ]
        indexes = [
            # The outbox poll: due queued rows, and rows stuck in "sending".
            models.Index(fields=["status", "next_attempt_at"], name="message_outbox_idx"),
            # Out-of-session reply rate limit: last reply to this sender from this number.
            models.Index(
                fields=["purpose", "recipient", "sender", "created_at"],
                name="message_reply_limit_idx",
            ),
        ]

    def __str__(self) -> str:
        # No numbers: see Participant.__str__.
        return f"{self.direction} #{self.pk} ({self.status})"


class MessagePart(models.Model):
    """One part of a sent outbound SMS, as Vonage numbered it; each gets its own receipt."""

    class Status(models.TextChoices):
        SENT = "sent", "Sent"
        ACCEPTED = "accepted", "Accepted"
        BUFFERED = "buffered", "Buffered"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        UNKNOWN = "unknown", "Unknown"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="parts")
    vonage_message_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENT)
    error_code = models.CharField(max_length=32, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    network = models.CharField(max_length=16, blank=True)
    receipt_at = models.DateTimeField(null=True, blank=True)
    # Set on the parts of an earlier send when the message is sent again (a retry after a
    # partly accepted send, or staff's retry): their late receipts are still recorded, but the
    # message's status follows only the parts of its latest send.
    superseded = models.BooleanField(default=False)

    class Meta:
        ordering = ["message_id", "id"]

    def __str__(self) -> str:
        return self.vonage_message_id


class InboundPart(models.Model):
    """A part of a concatenated inbound SMS, kept until every part has arrived (rule 8)."""

    vonage_message_id = models.CharField(max_length=64, unique=True)
    sender = models.CharField(max_length=16)
    recipient = models.CharField(max_length=16)
    concat_ref = models.CharField(max_length=32)
    concat_total = models.PositiveSmallIntegerField()
    concat_part = models.PositiveSmallIntegerField()
    text = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # Set when the parts were joined into one inbound Message.
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="inbound_parts"
    )

    class Meta:
        ordering = ["sender", "concat_ref", "concat_part"]
        constraints = [
            # Only among parts still waiting to be joined: a phone numbers its concatenated
            # messages with a one-byte reference, so a sender reuses a `concat-ref` sooner or
            # later, and a new message must not collide with an old, joined one.
            models.UniqueConstraint(
                fields=["sender", "recipient", "concat_ref", "concat_part"],
                condition=Q(message__isnull=True),
                name="inbound_part_pending_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["sender", "recipient", "concat_ref"], name="inbound_part_group_idx"
            ),
            models.Index(fields=["message", "received_at"], name="inbound_part_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.sender} ref {self.concat_ref} part {self.concat_part}/{self.concat_total}"


def event_public_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class Event(models.Model):
    """One marketplace event (DESIGN.md §11), written in the transaction of the change it
    reports and delivered from this outbox; `public_id` is its `id` and `webhook-id`."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    public_id = models.CharField(
        max_length=40, unique=True, default=event_public_id, editable=False
    )
    type = models.CharField(max_length=32, db_index=True)
    # Events of one conversation are delivered in order; null: no order to keep.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    data = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Retries go on for EVENT_GIVE_UP_AFTER from here, then the event is failed.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="event_outbox_idx"),
            models.Index(fields=["conversation", "status", "id"], name="event_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id} ({self.status})"
