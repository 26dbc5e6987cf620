"""Admin for messages: read-only (they are the audit trail), with a retry action for failures.

Nobody adds, edits or deletes a message here. Staff with the "change message" permission may
retry failed outbound messages: `message_retry` queues them again with a fresh set of attempts,
and the retry is written to the admin history of each message.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.common.admin_display import status_badge, truncated
from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.proxy.admin.masking import MessageNumbersMasking
from smsproxy.proxy.models import InboundPart, Message, MessagePart
from smsproxy.proxy.outbox.queue import message_retry


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class MessagePartInline(ReadOnlyInline):
    model = MessagePart
    verbose_name = "sent part"
    fields = readonly_fields = (
        "vonage_message_id",
        "status",
        "error_code",
        "price",
        "network",
        "receipt_at",
        "superseded",
    )


class InboundPartInline(ReadOnlyInline):
    model = InboundPart
    fk_name = "message"
    verbose_name = "received part"
    fields = readonly_fields = (
        "concat_part",
        "concat_total",
        "concat_ref",
        "vonage_message_id",
        "text",
        "received_at",
    )


@admin.register(Message)
class MessageAdmin(MessageNumbersMasking, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "direction",
        "purpose",
        "sender",
        "recipient",
        "short_text",
        "status_badge",
        "error_code",
        "attempts",
        "conversation",
    ]
    list_filter = ["direction", "status", "purpose", "intercept", "created_at"]
    search_help_text = "A number (any format), a conversation's reference, text or Vonage id."
    search_fields = [
        "sender",
        "recipient",
        "text",
        "vonage_message_id",
        "parts__vonage_message_id",
        "inbound_parts__vonage_message_id",
        "=id",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["conversation"]
    show_full_result_count = False
    actions = ["retry"]
    inlines = [MessagePartInline, InboundPartInline]
    fieldsets = [
        (None, {"fields": ["direction", "purpose", "status", "conversation", "forwarded_from"]}),
        ("SMS", {"fields": ["sender", "recipient", "text", "vonage_message_id", "price"]}),
        (
            "Delivery",
            {
                "fields": [
                    "intercept",
                    "attempts",
                    "max_attempts",
                    "next_attempt_at",
                    "claimed_at",
                    "error_code",
                    "error_text",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at", "sent_at", "delivered_at"]}),
        ("Call", {"fields": ["caller_leg_uuid", "callee_leg_uuid", "duration"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("conversation", "forwarded_from")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Not `permissions=["change"]`: ReadOnlyAdminMixin denies "change" to everyone, since
        # nobody edits a message here. Retrying is what the "change message" permission grants.
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.display(description="text")
    def short_text(self, message: Message) -> str:
        return truncated(message.text, 40)  # in full in the tooltip and on the message's page

    @admin.display(description="status", ordering="status")
    def status_badge(self, message: Message) -> str:
        return status_badge(message.status, message.get_status_display())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        """Also a number in any format (national or E.164) and a conversation's reference."""
        filtered = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return queryset, may_have_duplicates
        extra = Q(conversation__reference=term)
        number = phone_parse(number=term)
        if number is not None:
            extra |= Q(sender=number.e164) | Q(recipient=number.e164)
        return queryset | filtered.filter(extra), may_have_duplicates

    @admin.action(description="Retry the selected failed outbound messages", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        retried = 0
        for message in queryset.order_by("pk"):
            was, attempts = message.status, message.attempts
            try:
                retried_message = message_retry(message=message)
            except ApplicationError as error:
                self.message_user(request, error.detail, messages.WARNING)
                continue
            self.log_change(
                request,
                retried_message,
                f"Retried: status {was} → {retried_message.status}, "
                f"attempts {attempts} → {retried_message.attempts}.",
            )
            retried += 1
        if retried:
            self.message_user(request, f"Queued {retried} message(s) again.", messages.SUCCESS)
