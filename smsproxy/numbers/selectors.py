"""Reads of the number pool: lookups by msisdn, provisioning jobs, the inbound webhook URL."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from http import HTTPStatus

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import msisdn_normalize
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber

# A "running" job that logged nothing for this long lost its worker (killed, redeployed): it
# may run again. A live run logs every search, purchase and configuration, each bounded by the
# provider's timeout, so a long job is not stale while it makes progress.
JOB_STALE_AFTER = timedelta(minutes=15)


def inbound_webhook_url() -> str:
    """The URL every rented number's inbound SMS webhook (`moHttpUrl`) must point at."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("vonage-inbound-sms")


def number_get(*, msisdn: str) -> VirtualNumber:
    """The pool's row for a number given with or without '+'."""
    normalized = msisdn_normalize(msisdn)
    try:
        return VirtualNumber.objects.get(msisdn=normalized)
    except VirtualNumber.DoesNotExist:
        raise ApplicationError(
            f"{normalized} is not a number of the pool.",
            code="number_not_found",
            status=HTTPStatus.NOT_FOUND,
        ) from None


def number_get_many(*, msisdns: Iterable[str]) -> list[VirtualNumber]:
    """The pool's rows for numbers as staff list them (`number_get`), each once, in order given."""
    numbers = {}
    for msisdn in msisdns:
        number = number_get(msisdn=msisdn)
        numbers[number.pk] = number
    return list(numbers.values())


def number_list(*, status: str = "", country: str = "") -> QuerySet[VirtualNumber]:
    """The pool for the API: optional filters, stable order.

    A number's use is its stored load, `assigned_participants`: the proxy keeps it exact in the
    transactions that assign and free participants, so reading it costs no join.
    """
    queryset = VirtualNumber.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    if country:
        queryset = queryset.filter(country=country.upper())
    return queryset.order_by("msisdn")


def number_is_configured(*, number: VirtualNumber) -> bool:
    """The number's inbound webhook points at this deployment."""
    return number.configured_at is not None and number.inbound_webhook_url == inbound_webhook_url()


def provisioning_job_last_activity(*, job: ProvisioningJob) -> datetime | None:
    """When the job last showed it was alive: its latest log entry, or the start of its run."""
    moments = [job.started_at] if job.started_at is not None else []
    if job.log and isinstance(job.log[-1], dict):
        try:
            logged = datetime.fromisoformat(str(job.log[-1].get("at", "")))
        except ValueError:
            pass
        else:
            if logged.tzinfo is not None:
                moments.append(logged)
    return max(moments, default=None)


def provisioning_job_is_stale(*, job: ProvisioningJob, now: datetime | None = None) -> bool:
    """A job "running" that has logged nothing for JOB_STALE_AFTER lost its worker."""
    now = now or timezone.now()
    last_activity = provisioning_job_last_activity(job=job)
    return (
        job.status == ProvisioningJob.Status.RUNNING
        and last_activity is not None
        and last_activity < now - JOB_STALE_AFTER
    )


def provisioning_job_is_runnable(*, job: ProvisioningJob, now: datetime | None = None) -> bool:
    """The job may be run (again): pending, partial or failed, or a running job gone stale."""
    if job.status in (
        ProvisioningJob.Status.PENDING,
        ProvisioningJob.Status.PARTIAL,
        ProvisioningJob.Status.FAILED,
    ):
        return True
    return provisioning_job_is_stale(job=job, now=now)


def provisioning_job_numbers(*, job: ProvisioningJob) -> QuerySet[VirtualNumber]:
    """Numbers a job rented that are still rented."""
    return VirtualNumber.objects.filter(
        provisioning_job=job, status=VirtualNumber.Status.ACTIVE
    ).order_by("rented_at", "pk")


def provisioning_job_progress(*, job: ProvisioningJob) -> str:
    """Where a job is, in one line: "Running: 2 of 5 bought, 1 failed", "Succeeded: 3 synced"."""
    counts: dict[str, int] = {}
    for outcome in job.outcomes.values_list("outcome", flat=True):
        counts[outcome] = counts.get(outcome, 0) + 1
    failed = counts.pop(JobNumberOutcome.Outcome.FAILED, 0)
    if job.kind == ProvisioningJob.Kind.SYNC:
        done = f"{sum(counts.values())} number(s) synced"
        if counts:
            done += (
                " ("
                + ", ".join(
                    f"{count} {JobNumberOutcome.Outcome(name).label.removeprefix('Synced: ')}"
                    for name, count in sorted(counts.items())
                )
                + ")"
            )
    else:
        done = (
            f"{counts.get(JobNumberOutcome.Outcome.BOUGHT, 0)} of {job.quantity} bought, "
            f"{counts.get(JobNumberOutcome.Outcome.CONFIGURED, 0)} configured"
        )
    if failed:
        done += f", {failed} failed"
    state = job.get_status_display()
    if job.status == ProvisioningJob.Status.PENDING:
        return f"{state}: waiting for a worker."
    return f"{state}: {done}."
