"""Admin for conversations: the thread, participants and messages inline, search by number.

Conversations are opened through the API (assignment, insight and intro SMS live in the
service) and are never deleted (their messages are the audit trail), so the admin can neither
add nor delete them, nor edit anything on the page. What staff may change goes through the
buttons and the list's action (`conversation_state`): Close, Reopen and Reassign, each behind
a confirmation page and the "change conversation" permission.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from smsproxy.common.admin_display import status_badge
from smsproxy.common.admin_privacy import RealNumberMaskingMixin
from smsproxy.common.phone import phone_parse
from smsproxy.common.privacy import mask_number
from smsproxy.proxy.admin.conversation_inlines import (
    MESSAGE_INLINE_LIMIT,
    LiveStatusFilter,
    MessageInline,
)
from smsproxy.proxy.admin.conversation_state import ConversationStateViews
from smsproxy.proxy.admin.masking import participant_label
from smsproxy.proxy.admin.thread import thread_html
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import conversation_is_live


class ParticipantInline(RealNumberMaskingMixin, admin.TabularInline):
    """Read-only: a participant's proxy number changes through Reassign (a confirmation
    first, the service's checks under lock, the admin history written by the service)."""

    model = Participant
    masked_fields: ClassVar = {"real_number": "real_number_masked"}
    fields = readonly_fields = (
        "name",
        "real_number",
        "country",
        "proxy_number",
        "active",
        "created_at",
    )
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Participant]:
        return super().get_queryset(request).select_related("proxy_number")

    @admin.display(description="real number")
    def real_number_masked(self, participant: Participant) -> str:
        return mask_number(participant.real_number)


@admin.register(Conversation)
class ConversationAdmin(RealNumberMaskingMixin, ConversationStateViews):
    masked_fields: ClassVar = {
        "participant_summary": "participant_summary_masked",
        "thread": "thread_masked",
    }
    list_display = [
        "public_id",
        "reference",
        "live_status",
        "participant_summary",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
    ]
    list_filter = [LiveStatusFilter, "close_reason", "created_at"]
    search_fields = ["reference", "participants__real_number", "participants__name"]
    search_help_text = (
        "Reference, conversation id, a participant's name, real or proxy number (any format)."
    )
    date_hierarchy = "created_at"
    fields = [
        "public_id",
        "reference",
        "live_status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "all_messages",
        "thread",
    ]
    # The reference is the marketplace's, set through the API: an edit here would bypass the
    # services (and the events the marketplace relies on).
    readonly_fields = [
        "public_id",
        "reference",
        "live_status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "all_messages",
        "thread",
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

    @admin.display(description="status", ordering="status")
    def live_status(self, conversation: Conversation) -> str:
        if conversation_is_live(conversation=conversation):
            return status_badge("active", "Active")
        if conversation.status == Conversation.Status.ACTIVE:
            return status_badge("expired", "Expired, not yet swept")
        return status_badge("closed", "Closed")

    @admin.display(description="messages")
    def all_messages(self, conversation: Conversation) -> str:
        total = conversation.messages.count()
        url = reverse("admin:proxy_message_changelist")
        shown = (
            f"the latest {MESSAGE_INLINE_LIMIT} below" if total > MESSAGE_INLINE_LIMIT else "below"
        )
        return format_html(
            '<a href="{}?{}">All {} message(s)</a> ({})',
            url,
            urlencode({"conversation__id__exact": conversation.pk}),
            total,
            shown,
        )

    @admin.display(description="thread")
    def thread(self, conversation: Conversation) -> str:
        return thread_html(conversation=conversation, limit=MESSAGE_INLINE_LIMIT, masked=False)

    @admin.display(description="thread")
    def thread_masked(self, conversation: Conversation) -> str:
        return thread_html(conversation=conversation, limit=MESSAGE_INLINE_LIMIT, masked=True)

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, MessageInline) and obj is not None and obj.pk:
            # The formset filters its queryset again, which a sliced one refuses: select the
            # latest ids first.
            latest = list(
                Message.objects.filter(conversation=obj)
                .order_by("-created_at", "-id")
                .values_list("pk", flat=True)[:MESSAGE_INLINE_LIMIT]
            )
            kwargs["queryset"] = inline.get_queryset(request).filter(pk__in=latest)
        return kwargs

    @admin.display(description="participants")
    def participant_summary(self, conversation: Conversation) -> str:
        # One line per participant: the list stays narrow enough for 1400 px.
        return format_html_join(
            mark_safe("<br>"),
            "{}",
            ((participant_label(p, masked=False),) for p in conversation.participants.all()),
        )

    @admin.display(description="participants")
    def participant_summary_masked(self, conversation: Conversation) -> str:
        return format_html_join(
            mark_safe("<br>"),
            "{}",
            ((participant_label(p, masked=True),) for p in conversation.participants.all()),
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
        number = phone_parse(number=term) if term else None
        if number is not None:
            # "07700 900123" finds "+447700900123".
            extra |= Q(participants__real_number=number.e164)
            extra |= Q(participants__proxy_number__msisdn=number.e164)
        if extra:
            queryset = queryset | filtered.filter(extra)
            may_have_duplicates = True
        return queryset, may_have_duplicates
