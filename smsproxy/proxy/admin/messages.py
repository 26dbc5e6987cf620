"""Admin for messages: read-only (they are the audit trail), with Retry for failures.

Nobody adds, edits or deletes a message here. Staff with the "change message" permission may
retry failed outbound messages, from the list's action or the Retry button on a message's page
(behind a confirmation): `message_retry` queues them again with a fresh set of attempts and
writes the retry to the message's admin history. The page shows Vonage's id of every part
and what each error code means (`errors`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.common.admin_display import status_badge, truncated
from smsproxy.common.admin_privacy import real_number_display
from smsproxy.common.audit import request_actor
from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.proxy.admin.confirm import confirmation_page
from smsproxy.proxy.admin.errors import message_error_description, part_error_description
from smsproxy.proxy.admin.masking import MessageNumbersMasking
from smsproxy.proxy.models import InboundPart, Message, MessagePart
from smsproxy.proxy.outbox.queue import message_retry, message_retryable


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
        "error_description",
        "price",
        "network",
        "receipt_at",
        "superseded",
    )

    @admin.display(description="error (Vonage)")
    def error_description(self, part: MessagePart) -> str:
        return part_error_description(part)


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
        "error",
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
        ("SMS", {"fields": ["sender", "recipient", "text", "vonage_ids", "price"]}),
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
                    "error_description",
                    "error_text",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at", "sent_at", "delivered_at"]}),
        ("Call", {"fields": ["caller_leg_uuid", "callee_leg_uuid", "duration"]}),
    ]

    change_form_template = "admin/proxy/message/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        # The parts tell a receipt's err-code from a send's status (`message_error_description`).
        return (
            super()
            .get_queryset(request)
            .select_related("conversation", "forwarded_from")
            .prefetch_related("parts")
        )

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_retry"
        view = self.admin_site.admin_view(self.retry_view)
        return [path("<path:object_id>/retry/", view, name=name), *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        context["can_retry"] = (
            obj is not None
            and self.has_retry_permission(request)
            and message_retryable(message=obj)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Retry button: a confirmation page, then `message_retry` (which writes history)."""
        if not self.has_retry_permission(request):
            raise PermissionDenied
        message = self.get_object(request, object_id)
        if message is None:
            raise Http404
        page = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(message.pk)],
            current_app=self.admin_site.name,
        )
        if not message_retryable(message=message):
            notice = f"Only failed outbound messages can be retried; this one is {message.status}."
            self.message_user(request, notice, messages.WARNING)
            return HttpResponseRedirect(page)
        if request.method == "POST":
            try:
                message_retry(message=message, actor=request_actor(request))
            except ApplicationError as error:
                self.message_user(request, error.detail, messages.ERROR)
            else:
                self.message_user(request, "Queued the message again.", messages.SUCCESS)
            return HttpResponseRedirect(page)
        recipient = real_number_display(message.recipient, request=request)
        return confirmation_page(
            self,
            request,
            title="Retry this message: are you sure?",
            verb="Retry",
            original=message,
            paragraphs=[
                f"Message #{message.pk} to {recipient} is {message.status}"
                + (f" (error {message.error_code})." if message.error_code else "."),
                f"Retrying queues it again with a fresh {message.max_attempts} attempts; the "
                "recipient may get the text twice if the first send in fact arrived.",
            ],
            cancel_url=page,
        )

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

    @admin.display(description="Vonage message id(s)")
    def vonage_ids(self, message: Message) -> str:
        """Every id Vonage gave the message: one per part sent (an earlier send's marked
        superseded), one per part received, or the inbound text's or call's own."""
        rows: list[tuple[str, str]] = [
            (part.vonage_message_id, f"{part.status}{', superseded' if part.superseded else ''}")
            for part in message.parts.all()
        ]
        rows += [
            (part.vonage_message_id, f"part {part.concat_part} of {part.concat_total}")
            for part in message.inbound_parts.all()
        ]
        if message.vonage_message_id:
            rows.append((message.vonage_message_id, message.direction))
        if not rows:
            return "-"
        return format_html_join("<br>", "<code>{}</code> ({})", rows)

    @admin.display(description="error", ordering="error_code")
    def error(self, message: Message) -> str:
        """The code, what it means in the tooltip (the list stays narrow)."""
        if not message.error_code:
            return ""
        meaning = message_error_description(message)
        if not meaning:
            return message.error_code
        return format_html('<span title="{}">{} ⓘ</span>', meaning, message.error_code)

    @admin.display(description="error (Vonage)")
    def error_description(self, message: Message) -> str:
        return message_error_description(message) or "-"

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
        actor = request_actor(request)
        for message in queryset.order_by("pk"):
            try:
                message_retry(message=message, actor=actor)
            except ApplicationError as error:
                self.message_user(request, error.detail, messages.WARNING)
                continue
            retried += 1
        if retried:
            self.message_user(request, f"Queued {retried} message(s) again.", messages.SUCCESS)
