"""Admin for marketplace events (DESIGN.md §11): what was sent, what is stuck, and a resend.

Read-only like messages: the service writes events. Staff with the "change event" permission
may resend selected events (`event_resend`: pending again, due now, a fresh 24 hours of
retries), which writes each resend to the event's admin history.
"""

from __future__ import annotations

import json
from typing import ClassVar

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.common.admin_privacy import RealNumberMaskingMixin
from smsproxy.common.audit import request_actor
from smsproxy.common.privacy import text_mask_numbers
from smsproxy.proxy.events.deliver import event_resend
from smsproxy.proxy.models import Event


@admin.register(Event)
class EventAdmin(RealNumberMaskingMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    # The payload names the participants' real numbers (and proxy numbers, masked alike).
    masked_fields: ClassVar = {"data": "data_masked"}
    list_display = [
        "public_id",
        "created_at",
        "type",
        "conversation",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
    ]
    list_filter = ["status", "type", "created_at"]
    # Search by the conversation's public id or reference, or the event's own id.
    search_fields = ["=public_id", "=conversation__public_id", "conversation__reference"]
    date_hierarchy = "created_at"
    list_select_related = ["conversation"]
    show_full_result_count = False
    actions = ["resend"]
    fields = [
        "public_id",
        "type",
        "conversation",
        "status",
        "attempts",
        "first_attempt_at",
        "next_attempt_at",
        "last_error",
        "created_at",
        "delivered_at",
        "data",
    ]

    @admin.display(description="data")
    def data_masked(self, event: Event) -> str:
        return format_html("<pre>{}</pre>", text_mask_numbers(json.dumps(event.data, indent=2)))

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Not `permissions=["change"]`: ReadOnlyAdminMixin denies "change" to everyone, since
        # nobody edits an event here. Resending is what the "change event" permission grants.
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Resend the selected events", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        resent, actor = 0, request_actor(request)
        for event in queryset.order_by("pk"):
            event_resend(event=event, actor=actor)  # writes the event's admin history
            resent += 1
        self.message_user(request, f"Resending {resent} event(s).", messages.SUCCESS)
