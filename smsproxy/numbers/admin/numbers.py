"""Admin for the number pool: list, actions, and the "Buy numbers" and "Sync from Vonage" pages.

Every change goes through the numbers services and is written to the admin history (LogEntry).
Numbers are never added or deleted by hand: they come from "Buy numbers" or "Sync from Vonage"
(both jobs that a worker runs) and leave by "Release", so the pool always matches the provider
account.
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
from smsproxy.numbers.services.common import provider_description
from smsproxy.numbers.services.provisioning_start import provisioning_job_submit, sync_job_create
from smsproxy.numbers.services.release import numbers_release, numbers_release_preview
from smsproxy.numbers.services.rental import (
    number_reserve,
    number_unreserve,
    numbers_configure,
)
from smsproxy.numbers.usage import live_uses_text


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
                # The service writes the history entry, old → new, in its transaction.
                service(number=number, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                failed += 1
                continue
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
        form = ReleaseConfirmForm(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            self._release_confirmed(request, list(queryset), force=form.cleaned_data["force"])
            return None
        preview = numbers_release_preview(numbers=list(queryset))
        rows = [
            {
                "number": number,
                "live": 0 if number in preview.already_released else number.assigned_participants,
                "released": number in preview.already_released,
                "conversations": [
                    {
                        "use": use,
                        "url": reverse(
                            "admin:proxy_conversation_change", args=[use.conversation_pk]
                        ),
                    }
                    for use in preview.uses[number.pk]
                ],
            }
            for number in preview.numbers
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Release numbers: are you sure?",
            "subtitle": None,
            "opts": self.opts,
            "rows": rows,
            "in_use": len(preview.in_use),
            "releasable": len(preview.numbers) - len(preview.already_released),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/numbers/virtualnumber/release_confirmation.html", context
        )

    def _release_confirmed(
        self, request: HttpRequest, numbers: list[VirtualNumber], *, force: bool
    ) -> None:
        # The rule shared with `release_numbers` (smsproxy.numbers.services.release): in-use
        # numbers without force refuse the whole release; the history is written by the service.
        try:
            outcome = numbers_release(numbers=numbers, force=force, actor=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return
        for number, why in outcome.failed:
            self.message_user(request, f"{number.msisdn}: {why}", messages.ERROR)
        skipped = (
            f" {len(outcome.already_released)} already released."
            if outcome.already_released
            else ""
        )
        closed = [use for uses in outcome.closed.values() for use in uses]
        closing = f" Closed: {live_uses_text(closed)}." if closed else ""
        if outcome.released:
            self.message_user(
                request,
                f"Released {len(outcome.released)} number(s).{closing}{skipped}",
                messages.SUCCESS,
            )
        else:
            _nothing_changed(self, request, "released", failed=len(outcome.failed), already=skipped)

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
        extra_context = {
            **(extra_context or {}),
            "can_manage": self.has_change_permission(request),
            "sync_source": provider_description(),
        }
        return super().changelist_view(request, extra_context)

    def buy_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = BuyNumbersForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                job = provisioning_job_submit(requested_by=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                # The form checks what it can; the service has the last word (a country the
                # provider offers no such numbers in is refused here, before any job exists).
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
        """Start a sync job (off the request path, like "Buy numbers") and show its page."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        job = sync_job_create(requested_by=request.user)
        source = provider_description()
        self.log_addition(request, job, f"Requested a sync with {source}.")
        started, level = job_start_message(job)
        self.message_user(request, f"Syncing from {source}. {started}", level)
        return HttpResponseRedirect(reverse("admin:numbers_provisioningjob_change", args=[job.pk]))
