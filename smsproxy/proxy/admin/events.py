"""Admin for marketplace events (DESIGN.md §11): what was sent, what is stuck, and a resend.

Read-only like messages: the service writes events. Staff with the "change event" permission
may resend selected events (`event_resend`: pending again, due now, a fresh 24 hours of
retries); each resend is written to the event's admin history.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.proxy.events.deliver import event_resend
from smsproxy.proxy.models import Event


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Not `permissions=["change"]`: ReadOnlyAdminMixin denies "change" to everyone, since
        # nobody edits an event here. Resending is what the "change event" permission grants.
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Resend the selected events", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        resent = 0
        for event in queryset.order_by("pk"):
            event_resend(event=event)
            self.log_change(request, event, "Resent: pending again, due now.")
            resent += 1
        self.message_user(request, f"Resending {resent} event(s).", messages.SUCCESS)
