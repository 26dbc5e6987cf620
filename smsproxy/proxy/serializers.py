"""Small input and output serializers of the conversations API (DESIGN.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.common.redaction import text_redact_numbers
from smsproxy.proxy.events.payloads import message_parties
from smsproxy.proxy.models import Conversation, Event, Message, Participant
from smsproxy.proxy.selectors import conversation_close_reason, conversation_is_live
from smsproxy.proxy.services.assignment import NumberSelection
from smsproxy.proxy.services.conversations import REFERENCE_MAX_LENGTH, TTL_MAX_SECONDS
from smsproxy.proxy.services.participants import (
    NAME_MAX_LENGTH,
    ParticipantSpec,
    participant_label,
)

# The error codes of DESIGN §7 that a participant's problems are answered with.
_INVALID_NUMBER = "invalid_number"
_INVALID_PARTICIPANTS = "invalid_participants"


class ParticipantInputSerializer(serializers.Serializer[Any]):
    """One participant: the number read by `phone_parse`, the name checked for rule 9."""

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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        name = " ".join(attrs["name"].split())
        number = phone_parse(number=attrs["number"])
        if number is None:
            raise serializers.ValidationError(
                {"number": ["Not a valid phone number."]}, code=_INVALID_NUMBER
            )
        # The name goes into the other participant's intro SMS: a phone number in it would
        # hand out a real number (rule 9).
        region = number.country or settings.PROXY_DEFAULT_COUNTRY
        if text_redact_numbers(text=name, region=region) != name:
            raise serializers.ValidationError(
                {"name": ["Must not contain a phone number."]}, code=_INVALID_PARTICIPANTS
            )
        return {"number": number, "name": name}


class ConversationCreateInputSerializer(serializers.Serializer[Any]):
    """The body of `POST /api/conversations/`; `validated_data` are `conversation_create`'s
    arguments, its participants two `ParticipantSpec`s the service trusts."""

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
    intro = serializers.BooleanField(
        required=False,
        default=True,
        help_text="false: no intro SMS; the marketplace tells its users the numbers itself.",
    )
    number_selection = serializers.ChoiceField(
        choices=[(choice.value, choice.value) for choice in NumberSelection],
        required=False,
        default=NumberSelection.AVOID_STICKY.value,
        help_text=(
            "`avoid-sticky`: a number each person has not used recently (a late reply to an old "
            "thread cannot reach the new partner). `prefer-sticky`: the number each person last "
            "used with the same other person, when it is free for them; otherwise as "
            "`avoid-sticky`."
        ),
    )

    def validate_participants(self, value: list[dict[str, Any]]) -> list[ParticipantSpec]:
        if len(value) != 2:
            raise serializers.ValidationError(
                f"A conversation has exactly two participants; {len(value)} given.",
                code=_INVALID_PARTICIPANTS,
            )
        return [
            ParticipantSpec(position=position, name=item["name"], number=item["number"])
            for position, item in enumerate(value)
        ]

    def application_error(self) -> Exception:
        """After a failed `is_valid()`: the error to answer.

        DESIGN §7: a missing or malformed number is `invalid_number`, like a wrong one; a
        participant count other than two or a phone number in a name is
        `invalid_participants`; anything else is DRF's `validation_error`.
        """
        errors = dict(self.errors)
        items = errors.pop("participants", None)
        if errors or items is None:
            return exceptions.ValidationError(self.errors)
        if isinstance(items, list):  # about the list itself, not its items
            if [item.code for item in items] != [_INVALID_PARTICIPANTS]:
                return exceptions.ValidationError(self.errors)
            return ApplicationError(
                str(items[0]),
                code=_INVALID_PARTICIPANTS,
                fields={"participants": ["Give exactly two participants."]},
            )
        if not all(isinstance(index, int) for index in items):  # e.g. not a list
            return exceptions.ValidationError(self.errors)
        # Errors of items: {index: {field: [ErrorDetail, ...]}}.
        problems = [
            (position, field, detail)
            for position, item in sorted(items.items())
            for field, details in item.items()
            for detail in details
        ]
        if not all(
            field == "number" or detail.code == _INVALID_PARTICIPANTS
            for _, field, detail in problems
        ):
            return exceptions.ValidationError(self.errors)
        position, field, detail = next(
            (problem for problem in problems if problem[1] == "number"), problems[0]
        )
        fields = {
            "participants": {
                str(index): {
                    key: [str(message) for message in messages] for key, messages in item.items()
                }
                for index, item in sorted(items.items())
                if item
            }
        }
        if field != "number":
            # Not named by its name, which holds a phone number.
            return ApplicationError(
                f"The name of participant {position + 1} contains a phone number; it is shown "
                "to the other participant, whose real number must stay private.",
                code=_INVALID_PARTICIPANTS,
                fields=fields,
            )
        label = participant_label(position=position, name=self._raw_name(position))
        if detail.code == _INVALID_NUMBER:
            shown = self._raw_number(position)
            message = f"The number of {label}, {shown}, is not a valid phone number."
        else:
            message = f"The number of {label} is missing or not a valid phone number: {detail}"
        return ApplicationError(message, code=_INVALID_NUMBER, fields=fields)

    def _raw_item(self, position: int) -> dict[str, Any]:
        data = self.initial_data if isinstance(self.initial_data, dict) else {}
        entries = data.get("participants")
        entry = entries[position] if isinstance(entries, list) else None
        return entry if isinstance(entry, dict) else {}

    def _raw_name(self, position: int) -> str:
        name = self._raw_item(position).get("name")
        return " ".join(name.split()) if isinstance(name, str) else ""

    def _raw_number(self, position: int) -> str:
        number = self._raw_item(position).get("number")
        return number.strip() if isinstance(number, str) else ""


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
    proxy_country = serializers.CharField(
        source="proxy_number.country",
        help_text=(
            "The country of `proxy_number`. It differs from `country` when the pool had no "
            "free number in the participant's country (rule 3 prefers it): the participant "
            "then texts an international number."
        ),
    )


class ConversationOutputSerializer(serializers.Serializer[Conversation]):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.SerializerMethodField()
    close_reason = serializers.SerializerMethodField()
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

    @extend_schema_field(
        serializers.ChoiceField(
            choices=Conversation.CloseReason.choices,
            allow_null=True,
            help_text="Why it is closed (`api`, `expired`, `staff`); null while live.",
        )
    )
    def get_close_reason(self, conversation: Conversation) -> str | None:
        return conversation_close_reason(conversation=conversation, now=self._now())


class MessageOutputSerializer(serializers.Serializer[Message]):
    id = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=Message.Direction.choices)
    purpose = serializers.ChoiceField(
        choices=Message.Purpose.choices,
        help_text=(
            "`conversation`: a participant's text or its forward; `intro`: the intro SMS; "
            "`system`: a system message of the marketplace; `out_of_session`: a reply to a "
            "text that no live conversation took."
        ),
    )
    sender = serializers.CharField()
    recipient = serializers.CharField()
    sender_name = serializers.SerializerMethodField(
        help_text=(
            "The participant whose text or call it is (for a forward: the author, not the "
            "proxy number it comes from); null for intro, system and out-of-session messages."
        )
    )
    recipient_name = serializers.SerializerMethodField(
        help_text="The participant it is for (for an inbound text: the other participant)."
    )
    forwarded_from = serializers.IntegerField(
        source="forwarded_from_id",
        allow_null=True,
        help_text="For a forward: the `id` of the inbound message whose text it carries.",
    )
    text = serializers.CharField()
    status = serializers.ChoiceField(choices=Message.Status.choices)
    error_code = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def _parties(self, message: Message) -> tuple[str | None, str | None]:
        # The list view passes the conversation's participants once for the whole page.
        participants = self.context.get("participants")
        if participants is None:
            conversation = message.conversation
            participants = list(conversation.participants.all()) if conversation else []
        return message_parties(message=message, participants=participants)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_sender_name(self, message: Message) -> str | None:
        return self._parties(message)[0]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_recipient_name(self, message: Message) -> str | None:
        return self._parties(message)[1]


class SystemMessageInputSerializer(serializers.Serializer[Any]):
    """The body of `POST /api/conversations/{id}/messages/`; `to` becomes E.164."""

    to = serializers.CharField(
        max_length=32,
        help_text="The real number of the participant to text, in any format `number` takes.",
    )
    text = serializers.CharField(
        trim_whitespace=False,
        help_text="At most PROXY_MAX_TEXT_LENGTH characters (default 1600); not empty.",
    )

    def validate_to(self, value: str) -> str:
        parsed = phone_parse(number=value)
        if parsed is None:
            raise serializers.ValidationError("Not a valid phone number.")
        return parsed.e164

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be empty.")
        if len(value) > settings.PROXY_MAX_TEXT_LENGTH:
            raise serializers.ValidationError(
                f"At most {settings.PROXY_MAX_TEXT_LENGTH} characters; {len(value)} given."
            )
        return value


class ConversationReopenInputSerializer(serializers.Serializer[Any]):
    ttl = serializers.IntegerField(
        min_value=1,
        max_value=TTL_MAX_SECONDS,
        required=False,
        allow_null=True,
        default=None,
        help_text="New lifetime in seconds from now; defaults to the conversation's own TTL.",
    )


class EventFilterSerializer(serializers.Serializer[Any]):
    after = serializers.CharField(
        required=False,
        max_length=40,
        help_text="An event's `id`: only the events after it (replay after an outage).",
    )


class EventOutputSerializer(serializers.Serializer[Event]):
    id = serializers.CharField(source="public_id", help_text="Also its `webhook-id`.")
    type = serializers.CharField()
    created_at = serializers.DateTimeField()
    status = serializers.ChoiceField(
        choices=Event.Status.choices, help_text="Its delivery to PROXY_EVENTS_URL."
    )
    attempts = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(allow_null=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `data` cannot be a class attribute: it would hide the serializer's own `.data`.
        fields = super().get_fields()
        fields["data"] = serializers.JSONField(
            help_text="As the event's body carries it (DESIGN.md §11)."
        )
        return fields
