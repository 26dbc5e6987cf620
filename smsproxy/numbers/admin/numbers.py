"""Admin for the number pool: list, actions, and the "Buy numbers" and "Sync from Vonage" pages.

Every change goes through the numbers services and is written to the admin history (LogEntry).
Numbers are never added or deleted by hand: they come from "Buy numbers" or "Sync from Vonage"
and leave by "Release", so the pool always matches the provider account.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from smsproxy.common.admin_display import muted, status_badge
from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.admin.jobs import job_start_message
from smsproxy.numbers.forms import BuyNumbersForm, ReleaseConfirmForm
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.selectors import inbound_webhook_url, number_is_configured
from smsproxy.numbers.services.provisioning import provisioning_job_create
from smsproxy.numbers.services.rental import (
    number_release,
    number_reserve,
    number_unreserve,
    numbers_configure,
)
from smsproxy.numbers.services.sync import numbers_sync


def _nothing_changed(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    done: str,
    *,
    failed: int,
    already: str = "",
) -> None:
    """An action that changed nothing says so, and why, as a warning: never "0 done" as success."""
    why = f" {failed} refused (see above)." if failed else ""
    model_admin.message_user(request, f"No number was {done}.{why}{already}", messages.WARNING)


@admin.register(VirtualNumber)
class VirtualNumberAdmin(admin.ModelAdmin):
    change_list_template = "admin/numbers/virtualnumber/change_list.html"
    # Fits 1400 px: the webhook URL is a ✓ with the URL in its tooltip (in full on the page).
    list_display = [
        "number",
        "country",
        "number_type",
        "features",
        "status_badge",
        "reserved_flag",
        "webhook",
        "rented_at",
        "live_conversations",
        "provisioning_job",
    ]
    list_filter = ["country", "number_type", "status", "reserved"]
    list_select_related = ["provisioning_job"]
    search_fields = ["msisdn"]
    search_help_text = "Search by number, with or without '+'."
    date_hierarchy = "rented_at"
    actions = ["configure_webhook", "reserve", "unreserve", "release"]
    readonly_fields = [
        "msisdn",
        "country",
        "number_type",
        "features",
        "monthly_cost",
        "status",
        "reserved",
        "inbound_webhook_url",
        "webhook_ok",
        "configured_at",
        "rented_at",
        "released_at",
        "last_synced_at",
        "provisioning_job",
        "active_participants",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Numbers are released (the rental cancelled at the provider), never deleted: their
        # rows keep the history of the conversations they carried.
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[VirtualNumber], search_term: str
    ) -> tuple[QuerySet[VirtualNumber], bool]:
        compact = "".join(char for char in search_term if char.isdigit())
        return super().get_search_results(request, queryset, compact or search_term)

    @admin.display(description="live participants", ordering="assigned_participants")
    def active_participants(self, obj: VirtualNumber) -> int:
        return obj.assigned_participants

    @admin.display(description="number", ordering="msisdn")
    def number(self, obj: VirtualNumber) -> str:
        return muted(obj.msisdn) if obj.status == VirtualNumber.Status.RELEASED else obj.msisdn

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: VirtualNumber) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="reserved", ordering="reserved")
    def reserved_flag(self, obj: VirtualNumber) -> str:
        # Unreserved is the normal state: shown as nothing, not as a red ✗.
        if not obj.reserved:
            return ""
        return status_badge("reserved", "reserved", title="Kept out of automatic assignment")

    @admin.display(description="webhook")
    def webhook(self, obj: VirtualNumber) -> str:
        if obj.status == VirtualNumber.Status.RELEASED:
            return ""
        if number_is_configured(number=obj):
            return format_html(
                '<span title="{}" style="color:#1e6b34">✓</span>', obj.inbound_webhook_url
            )
        configured = obj.inbound_webhook_url or "none"
        return format_html(
            '<span title="Configured: {}; expected: {}" style="color:#a3211a">✗ not set</span>',
            configured,
            inbound_webhook_url(),
        )

    @admin.display(description="live conv.", ordering="assigned_participants")
    def live_conversations(self, obj: VirtualNumber) -> str:
        """How many live participants use the number, linking to their live conversations."""
        if not obj.assigned_participants:
            return "0"
        # By URL name: the numbers app never imports the proxy app (its layer is above).
        url = reverse("admin:proxy_conversation_changelist")
        query = urlencode({"status": "active", "q": obj.msisdn})
        return format_html('<a href="{}?{}">{}</a>', url, query, obj.assigned_participants)

    @admin.display(description="webhook ok", boolean=True)
    def webhook_ok(self, obj: VirtualNumber) -> bool:
        return obj.status == VirtualNumber.Status.ACTIVE and number_is_configured(number=obj)

    # --- Actions ------------------------------------------------------------------------------

    @admin.action(
        description="Configure inbound webhook of selected numbers", permissions=["change"]
    )
    def configure_webhook(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        url = inbound_webhook_url()
        done = failed = 0
        for outcome in numbers_configure(numbers=queryset):
            if outcome.error:
                self.message_user(request, outcome.error, messages.ERROR)
                failed += 1
                continue
            self.log_change(request, outcome.number, f"Configured the inbound webhook: {url}")
            done += 1
        if done:
            self.message_user(request, f"Configured {done} number(s) to {url}.", messages.SUCCESS)
        else:
            _nothing_changed(self, request, "configured", failed=failed)

    @admin.action(description="Reserve selected numbers", permissions=["change"])
    def reserve(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        self._set_reserved(request, queryset, reserved=True)

    @admin.action(description="Unreserve selected numbers", permissions=["change"])
    def unreserve(self, request: HttpRequest, queryset: QuerySet[VirtualNumber]) -> None:
        self._set_reserved(request, queryset, reserved=False)

    def _set_reserved(
        self, request: HttpRequest, queryset: QuerySet[VirtualNumber], *, reserved: bool
    ) -> None:
        service = number_reserve if reserved else number_unreserve
        verb = "Reserved" if reserved else "Unreserved"
        state = "reserved" if reserved else "not reserved"
        done = failed = already = 0
        for number in queryset:
            if number.reserved == reserved:
                already += 1
                continue
            try:
                service(number=number)
            except ApplicationError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                failed += 1
                continue
            # Numbers already in the asked state were skipped: this one was in the other.
            self.log_change(request, number, f"{verb} (was {'not ' if reserved else ''}reserved).")
            done += 1
        skipped = f" {already} already {state}." if already else ""
        if done:
            self.message_user(request, f"{verb} {done} number(s).{skipped}", messages.SUCCESS)
        else:
            _nothing_changed(self, request, verb.lower(), failed=failed, already=skipped)

    @admin.action(description="Release selected numbers…", permissions=["change"])
    def release(
        self, request: HttpRequest, queryset: QuerySet[VirtualNumber]
    ) -> TemplateResponse | None:
        numbers = list(queryset.order_by("msisdn"))
        counts = {number.pk: number.assigned_participants for number in numbers}
        form = ReleaseConfirmForm(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            self._release_confirmed(request, numbers, counts, force=form.cleaned_data["force"])
            return None
        rows = [
            {
                "number": number,
                "live": counts[number.pk],
                "released": number.status == VirtualNumber.Status.RELEASED,
            }
            for number in numbers
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Release numbers: are you sure?",
            "subtitle": None,
            "opts": self.opts,
            "rows": rows,
            "in_use": sum(1 for row in rows if row["live"] and not row["released"]),
            "releasable": sum(1 for row in rows if not row["released"]),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/numbers/virtualnumber/release_confirmation.html", context
        )

    def _release_confirmed(
        self,
        request: HttpRequest,
        numbers: list[VirtualNumber],
        counts: dict[int, int],
        *,
        force: bool,
    ) -> None:
        released = failed = already = 0
        for number in numbers:
            if number.status == VirtualNumber.Status.RELEASED:
                already += 1
                continue
            was = number.get_status_display().lower()
            try:
                number_release(number=number, force=force)
            except ApplicationError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                failed += 1
                continue
            closed = counts[number.pk]
            self.log_change(
                request,
                number,
                f"Released (was {was})"
                + (
                    f"; forced, closed the conversations of {closed} participant(s)"
                    if closed
                    else ""
                )
                + ".",
            )
            released += 1
        skipped = f" {already} already released." if already else ""
        if released:
            self.message_user(request, f"Released {released} number(s).{skipped}", messages.SUCCESS)
        else:
            _nothing_changed(self, request, "released", failed=failed, already=skipped)

    # --- Buttons: "Buy numbers" and "Sync from Vonage" ---------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("buy/", self.admin_site.admin_view(self.buy_view), name=f"{info}_buy"),
            path(
                "sync/",
                self.admin_site.admin_view(require_POST(self.sync_view)),
                name=f"{info}_sync",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_manage": self.has_change_permission(request)}
        return super().changelist_view(request, extra_context)

    def buy_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = BuyNumbersForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                job = provisioning_job_create(requested_by=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                # The form checks what it can; the service has the last word (e.g. country).
                field_name = next((name for name in exc.fields if name in form.fields), None)
                form.add_error(field_name, exc.detail)
            else:
                self.log_addition(request, job, f"Requested {job.quantity} number(s).")
                self.message_user(request, *job_start_message(job))
                return HttpResponseRedirect(
                    reverse("admin:numbers_provisioningjob_change", args=[job.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Buy numbers",
            "subtitle": None,
            "opts": self.opts,
            "form": form,
            "webhook_url": inbound_webhook_url(),
            "provider": settings.SMS_PROVIDER,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/numbers/virtualnumber/buy.html", context)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:numbers_virtualnumber_changelist")
        try:
            result = numbers_sync()
        except ApplicationError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return HttpResponseRedirect(changelist)
        for number in result.added:
            self.log_addition(request, number, "Imported by Sync from Vonage.")
        for number in result.updated:
            self.log_change(request, number, "Updated by Sync from Vonage.")
        for number in result.retired:
            self.log_change(
                request, number, "Released by Sync from Vonage: the account no longer rents it."
            )
        for failure in result.failed:
            self.message_user(request, f"Not synced: {failure}", messages.ERROR)
        self.message_user(
            request,
            f"Synced from Vonage: {result.summary}.",
            messages.WARNING if result.failed else messages.SUCCESS,
        )
        return HttpResponseRedirect(changelist)
