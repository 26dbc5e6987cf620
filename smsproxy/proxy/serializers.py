"""Small input and output serializers of the conversations API (DESIGN.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.conversations import (
    NAME_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    TTL_MAX_SECONDS,
    participant_label,
)


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error body: a machine-readable `code`, a human `detail`, per-field `fields`."""

    code = serializers.CharField()
    detail = serializers.CharField()

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "fields" cannot be a class attribute: it would shadow Serializer.fields.
        fields = super().get_fields()
        fields["fields"] = serializers.DictField(
            child=serializers.JSONField(),
            required=False,
            help_text="Validation errors: messages per request field.",
        )
        return fields


class ParticipantInputSerializer(serializers.Serializer[Any]):
    number = serializers.CharField(
        max_length=32,
        help_text="E.164 with or without '+', or national format in PROXY_DEFAULT_COUNTRY.",
    )
    name = serializers.CharField(
        max_length=NAME_MAX_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        help_text="Display name, used in the other participant's intro SMS.",
    )


class ConversationCreateInputSerializer(serializers.Serializer[Any]):
    # The count (exactly two) is the service's rule, answered with code `invalid_participants`.
    participants = ParticipantInputSerializer(many=True)
    reference = serializers.CharField(
        max_length=REFERENCE_MAX_LENGTH, required=False, allow_blank=True, default=""
    )
    ttl = serializers.IntegerField(
        min_value=1,
        max_value=TTL_MAX_SECONDS,
        required=False,
        allow_null=True,
        default=None,
        help_text="Lifetime in seconds; defaults to PROXY_CONVERSATION_TTL (0 = no expiry).",
    )

    def invalid_number_error(self) -> ApplicationError | None:
        """After a failed `is_valid()`: the `invalid_number` error of DESIGN §7 when the only
        errors are participants' numbers (missing, blank, too long), else None."""
        errors = dict(self.errors)
        items = errors.pop("participants", None)
        # DRF reports the items of a list by index: {1: {...}} (older releases: a list).
        if isinstance(items, list):
            items = dict(enumerate(items))
        if errors or not isinstance(items, dict) or not all(isinstance(k, int) for k in items):
            return None
        fields: dict[str, Any] = {}
        for position, item in sorted(items.items()):
            if not item:
                continue
            if set(item) != {"number"}:
                return None
            fields[str(position)] = {"number": [str(message) for message in item["number"]]}
        if not fields:
            return None
        position = int(next(iter(fields)))
        entries = (
            self.initial_data.get("participants") if isinstance(self.initial_data, dict) else None
        )
        entry = entries[position] if isinstance(entries, list) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        label = participant_label(position=position, name=name if isinstance(name, str) else "")
        return ApplicationError(
            f"The number of {label} is missing or not a valid phone number: "
            f"{fields[str(position)]['number'][0]}",
            code="invalid_number",
            fields={"participants": fields},
        )


class ConversationFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=Conversation.Status.choices,
        required=False,
        help_text="`active`: still routing messages; `closed`: closed or past its expiry.",
    )
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, required=False)
    number = serializers.CharField(
        max_length=32, required=False, help_text="A real number of either participant."
    )

    def validate_number(self, value: str) -> str:
        parsed = phone_parse(number=value)
        if parsed is None:
            raise serializers.ValidationError("Not a valid phone number.")
        return parsed.e164


class ParticipantOutputSerializer(serializers.Serializer[Participant]):
    name = serializers.CharField()
    number = serializers.CharField(source="real_number", help_text="The real number (E.164).")
    country = serializers.CharField()
    proxy_number = serializers.CharField(
        source="proxy_number.msisdn", help_text="The number this participant texts (E.164)."
    )


class ConversationOutputSerializer(serializers.Serializer[Conversation]):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.SerializerMethodField()
    participants = ParticipantOutputSerializer(many=True)

    def _now(self) -> datetime:
        now = self.context.get("now")
        return now if isinstance(now, datetime) else timezone.now()

    @extend_schema_field(
        serializers.ChoiceField(
            choices=Conversation.Status.choices,
            help_text="`closed` also once `expires_at` has passed, before the expiry sweep.",
        )
    )
    def get_status(self, conversation: Conversation) -> str:
        if conversation_is_live(conversation=conversation, now=self._now()):
            return Conversation.Status.ACTIVE
        return Conversation.Status.CLOSED

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_closed_at(self, conversation: Conversation) -> str | None:
        closed_at = conversation.closed_at
        if closed_at is None and not conversation_is_live(
            conversation=conversation, now=self._now()
        ):
            closed_at = conversation.expires_at
        return serializers.DateTimeField().to_representation(closed_at) if closed_at else None


class MessageOutputSerializer(serializers.Serializer[Message]):
    id = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=Message.Direction.choices)
    sender = serializers.CharField()
    recipient = serializers.CharField()
    text = serializers.CharField()
    status = serializers.ChoiceField(choices=Message.Status.choices)
    error_code = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
