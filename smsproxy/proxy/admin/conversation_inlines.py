"""The conversation page's message inline and the conversation list's status filter."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.proxy.admin.masking import MessageNumbersMasking
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.selectors import live_conversation_q

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
    "duration",  # calls only
)


# A busy conversation can have thousands of messages: the change page shows the latest ones and
# links to the messages changelist filtered by the conversation for the rest.
MESSAGE_INLINE_LIMIT = 50


class MessageInline(MessageNumbersMasking, ReadOnlyAdminMixin, admin.TabularInline):
    """The conversation's latest MESSAGE_INLINE_LIMIT messages (see ConversationAdmin)."""

    model = Message
    verbose_name_plural = f"messages (the latest {MESSAGE_INLINE_LIMIT})"
    fields = _MESSAGE_INLINE_FIELDS
    readonly_fields = _MESSAGE_INLINE_FIELDS
    ordering = ["created_at", "id"]
    extra = 0
    can_delete = False
    show_change_link = True


class LiveStatusFilter(admin.SimpleListFilter):
    """Status as it routes: a conversation past `expires_at` is dead before the sweep closes it."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("active", "Active"),
            ("expired", "Expired, not yet swept"),
            ("closed", "Closed"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> QuerySet[Conversation]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(live_conversation_q(now=now))
        if self.value() == "expired":
            return queryset.filter(status=Conversation.Status.ACTIVE, expires_at__lte=now)
        if self.value() == "closed":
            return queryset.filter(status=Conversation.Status.CLOSED)
        return queryset
