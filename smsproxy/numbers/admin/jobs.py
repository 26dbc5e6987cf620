"""Admin for jobs on the pool (buy, sync): read-only pages that follow a job, and "Run again"."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from smsproxy.common.admin import ReadOnlyAdminMixin
from smsproxy.common.admin_display import status_badge
from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import (
    number_is_configured,
    provisioning_job_is_runnable,
    provisioning_job_is_stale,
    provisioning_job_progress,
)
from smsproxy.numbers.services.provisioning_start import JobHandOff, provisioning_job_start


def job_start_message(job: ProvisioningJob) -> tuple[str, int]:
    """Hand the job to a worker; returns what happened, for the staff message, and its level."""
    try:
        started = provisioning_job_start(job=job)
    except ApplicationError as exc:
        return exc.detail, messages.ERROR
    if started.hand_off == JobHandOff.QUEUED:
        return f"{job} was queued for a worker; this page shows its progress.", messages.SUCCESS
    return (
        f"{job} is waiting for the delivery worker (manage.py run_outbox), which runs it within "
        "seconds; this page shows its progress.",
        messages.SUCCESS,
    )


@admin.register(ProvisioningJob)
class ProvisioningJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    change_form_template = "admin/numbers/provisioningjob/change_form.html"
    list_display = [
        "id",
        "kind",
        "country",
        "number_type",
        "features",
        "quantity",
        "rented",
        "status_badge",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_display_links = ["id", "country"]
    list_filter = ["kind", "status", "country"]
    list_select_related = ["requested_by"]
    readonly_fields = [
        "kind",
        "status",
        "progress",
        "error",
        "country",
        "number_type",
        "features",
        "pattern",
        "quantity",
        "rented_numbers",
        "number_outcomes",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "log_lines",
    ]
    fields = tuple(readonly_fields)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = list(self.readonly_fields)
        if obj is not None and obj.kind == ProvisioningJob.Kind.SYNC:
            # A sync rents nothing: what it asked for is only its country.
            for name in ("number_type", "features", "pattern", "quantity", "rented_numbers"):
                fields.remove(name)
        return tuple(fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProvisioningJob]:
        return super().get_queryset(request).annotate(rented_count=Count("numbers"))

    @admin.display(description="rented", ordering="rented_count")
    def rented(self, obj: ProvisioningJob) -> int:
        return int(getattr(obj, "rented_count", 0))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ProvisioningJob) -> str:
        return status_badge(obj.status, obj.get_status_display(), title=obj.error or "")

    @admin.display(description="progress")
    def progress(self, obj: ProvisioningJob) -> str:
        """One line that says where the job is; the page reloads while it changes."""
        return provisioning_job_progress(job=obj)

    @admin.display(description="per number")
    def number_outcomes(self, obj: ProvisioningJob) -> str:
        outcomes = list(obj.outcomes.all())
        if not outcomes:
            return "—"
        rows = format_html_join(
            "",
            '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    "errornote" if outcome.outcome == JobNumberOutcome.Outcome.FAILED else "",
                    outcome.msisdn,
                    status_badge(outcome.outcome, outcome.get_outcome_display()),
                    outcome.reason,
                )
                for outcome in outcomes
            ),
        )
        return format_html(
            '<table class="job-outcomes"><thead><tr><th>number</th><th>outcome</th>'
            "<th>reason</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="numbers rented")
    def rented_numbers(self, obj: ProvisioningJob) -> str:
        numbers = list(obj.numbers.order_by("rented_at", "pk"))
        if not numbers:
            return "—"
        return format_html_join(
            "",
            '<div><a href="{}">{}</a> {}</div>',
            (
                (
                    reverse("admin:numbers_virtualnumber_change", args=[number.pk]),
                    number.msisdn,
                    "released"
                    if number.status == VirtualNumber.Status.RELEASED
                    else "configured"
                    if number_is_configured(number=number)
                    else "not configured yet",
                )
                for number in numbers
            ),
        )

    @admin.display(description="log")
    def log_lines(self, obj: ProvisioningJob) -> str:
        if not obj.log:
            return "—"
        rows = format_html_join(
            "",
            '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    "errornote" if entry.get("level") == "error" else "",
                    entry.get("at", ""),
                    entry.get("level", ""),
                    entry.get("message", ""),
                )
                for entry in obj.log
            ),
        )
        return format_html("<table><tbody>{}</tbody></table>", rows)

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<int:job_id>/run/",
                self.admin_site.admin_view(require_POST(self.run_view)),
                name=f"{info}_run",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = ProvisioningJob.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        extra_context = {
            **(extra_context or {}),
            "can_run_again": job is not None
            and request.user.has_perm("numbers.change_virtualnumber")
            and provisioning_job_is_runnable(job=job),
            # Reload while a worker has the job, so staff see its log grow.
            "auto_refresh": job is not None
            and job.status in (ProvisioningJob.Status.PENDING, ProvisioningJob.Status.RUNNING)
            and not provisioning_job_is_stale(job=job),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def run_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """Run a job again: configure what it bought, buy what is missing.

        Also for a pending job, whose hand-off to a worker may have been lost (a broker outage),
        and for a job left "running" by a worker or request that died (silent for JOB_STALE_AFTER);
        if a worker runs it meanwhile, the service lets only one of them claim it.
        """
        if not request.user.has_perm("numbers.change_virtualnumber"):
            raise PermissionDenied
        job = get_object_or_404(ProvisioningJob, pk=job_id)
        if not provisioning_job_is_runnable(job=job):
            self.message_user(
                request, f"{job} is {job.get_status_display().lower()}.", messages.ERROR
            )
        else:
            self.log_change(request, job, "Ran the job again.")
            self.message_user(request, *job_start_message(job))
        return HttpResponseRedirect(reverse("admin:numbers_provisioningjob_change", args=[job.pk]))
