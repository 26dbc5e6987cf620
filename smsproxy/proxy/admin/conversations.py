"""Admin for conversations: participants and messages inline, the close action, reassignment.

Conversations are opened through the API (assignment, insight and intro SMS live in the
service) and are never deleted (their messages are the audit trail), so the admin can neither
add nor delete them. Changing a participant's proxy number goes through
`participant_reassign`, the same uniqueness rule as automatic assignment.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.conversations import (
    conversation_close,
    participant_reassign,
    participant_reassign_validate,
    real_number_parse,
)


class ParticipantInlineForm(forms.ModelForm):
    class Meta:
        model = Participant
        fields = ["proxy_number"]

    def clean_proxy_number(self) -> Any:
        proxy_number = self.cleaned_data["proxy_number"]
        participant = self.instance
        if participant.pk and proxy_number.pk != participant.proxy_number_id:
            try:
                participant_reassign_validate(participant=participant, proxy_number=proxy_number)
            except ApplicationError as exc:
                raise ValidationError(exc.detail, code=exc.code) from exc
        return proxy_number


class ParticipantInline(admin.TabularInline):
    model = Participant
    form = ParticipantInlineForm
    fields = ["name", "real_number", "country", "proxy_number", "active", "created_at"]
    readonly_fields = ["name", "real_number", "country", "active", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and not conversation_is_live(conversation=obj):
            readonly.append("proxy_number")
        return readonly

    def get_queryset(self, request: HttpRequest) -> QuerySet[Participant]:
        return super().get_queryset(request).select_related("proxy_number")


_MESSAGE_INLINE_FIELDS = (
    "created_at",
    "direction",
    "purpose",
    "sender",
    "recipient",
    "text",
    "status",
    "error_code",
    "attempts",
)


class MessageInline(admin.TabularInline):
    model = Message
    fields = _MESSAGE_INLINE_FIELDS
    readonly_fields = _MESSAGE_INLINE_FIELDS
    ordering = ["created_at", "id"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "reference",
        "status",
        "participant_summary",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
    ]
    list_filter = ["status", "close_reason", "created_at"]
    search_fields = ["reference", "participants__real_number", "participants__name"]
    search_help_text = "Reference, conversation id, a participant's real number or name."
    date_hierarchy = "created_at"
    fields = [
        "public_id",
        "reference",
        "status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
    ]
    readonly_fields = [
        "public_id",
        "status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
    ]
    inlines = [ParticipantInline, MessageInline]
    actions = ["close_conversations"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "participants",
                    queryset=Participant.objects.select_related("proxy_number").order_by("id"),
                )
            )
        )

    @admin.display(description="participants")
    def participant_summary(self, conversation: Conversation) -> str:
        return " · ".join(
            f"{participant.name or participant.real_number} ({participant.real_number}) "
            f"via {participant.proxy_number.msisdn}"
            for participant in conversation.participants.all()
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        filtered = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        extra = Q()
        with contextlib.suppress(ValueError):
            extra |= Q(public_id=uuid.UUID(term))
        number = real_number_parse(number=term) if term else None
        if number is not None:
            # "07700 900123" finds "+447700900123".
            extra |= Q(participants__real_number=number.e164)
        if extra:
            queryset = queryset | filtered.filter(extra)
            may_have_duplicates = True
        return queryset, may_have_duplicates

    def save_formset(
        self,
        request: HttpRequest,
        form: Any,
        formset: BaseInlineFormSet,
        change: Any,
    ) -> None:
        if formset.model is not Participant:
            super().save_formset(request, form, formset, change)
            return
        # Reassignment is the only edit of a participant; it goes through the service (which
        # re-checks under lock, closes expired holders of the route and queues the new intro)
        # instead of formset.save(). The formset's bookkeeping feeds the history message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for participant_form in formset.forms:
            if "proxy_number" not in participant_form.changed_data:
                continue
            participant = Participant.objects.get(pk=participant_form.instance.pk)
            try:
                participant = participant_reassign(
                    participant=participant,
                    proxy_number=participant_form.cleaned_data["proxy_number"],
                )
            except ApplicationError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                continue
            formset.changed_objects.append((participant, ["proxy_number"]))

    @admin.action(description="Close selected conversations (frees their numbers)")
    def close_conversations(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        closed = 0
        now = timezone.now()
        for conversation in queryset.filter(status=Conversation.Status.ACTIVE):
            conversation = conversation_close(
                conversation=conversation, reason=Conversation.CloseReason.STAFF, now=now
            )
            self.log_change(
                request,
                conversation,
                f"Closed (reason: {conversation.close_reason}); its proxy numbers are free.",
            )
            closed += 1
        skipped = queryset.count() - closed
        self.message_user(
            request,
            f"Closed {closed} conversation(s)"
            + (f"; {skipped} already closed." if skipped else "."),
            messages.SUCCESS,
        )
