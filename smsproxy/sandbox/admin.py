"""Read-only admin pages of the sandbox account: what it rents and every SMS it "sent"."""

from __future__ import annotations

from django.contrib import admin

from smsproxy.common.admin import ReadOnlyAdminMixin

from .models import SandboxMessage, SandboxNumber


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The sandbox state is written by the provider only; staff look, they do not edit."""


@admin.register(SandboxNumber)
class SandboxNumberAdmin(ReadOnlyAdmin):
    list_display = (
        "msisdn",
        "country",
        "type",
        "features",
        "inbound_url",
        "application_id",
        "rented_at",
        "cancelled_at",
    )
    list_filter = ("country", ("cancelled_at", admin.EmptyFieldListFilter))
    search_fields = ("msisdn",)


@admin.register(SandboxMessage)
class SandboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "sender", "recipient", "text", "encoding", "client_ref")
    list_filter = ("encoding",)
    search_fields = ("sender", "recipient", "text", "client_ref", "message_ids")
    date_hierarchy = "created_at"
