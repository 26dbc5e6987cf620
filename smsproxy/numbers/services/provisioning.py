"""Provisioning jobs: renting numbers from the provider (search, buy, configure), step by step.

Every call to the provider is made outside a database transaction: a Vonage round trip can take
seconds, and on SQLite an open write transaction blocks every other writer for that long. Each
database change is then its own short `transaction.atomic`, written right after the provider
call it records, so a crash between two steps never loses a rented number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from http import HTTPStatus
from typing import Any

from django.db import transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import (
    DEFAULT_NUMBER_TYPE,
    AvailableNumber,
    NumberUnavailableError,
    ProviderError,
    SmsProvider,
)
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import (
    inbound_webhook_url,
    number_is_configured,
    provisioning_job_is_stale,
    provisioning_job_numbers,
)
from smsproxy.numbers.services.common import (
    country_code_clean,
    features_clean,
    job_outcome_record,
    number_mark_configured,
    number_type_clean,
    pattern_clean,
    pool_active_msisdns,
)
from smsproxy.numbers.services.offer import MAX_SEARCH_SIZE
from smsproxy.numbers.services.sync_job import sync_job_body

logger = logging.getLogger(__name__)

# Called with each job log entry as it is written (commands print them as progress).
StepCallback = Callable[[dict[str, Any]], None]

# Searches in a row that rent nothing before a run gives up. A search that rents something
# always runs again: what was bought is no longer offered, so the next page shows new numbers.
MAX_FRUITLESS_SEARCHES = 3


def provisioning_job_create(
    *,
    country: str,
    quantity: int,
    number_type: str = DEFAULT_NUMBER_TYPE,
    features: str | tuple[str, ...] | list[str] = ("SMS",),
    pattern: str = "",
    requested_by: Any = None,
) -> ProvisioningJob:
    """Record a request to rent `quantity` numbers; `provisioning_job_run` does the renting."""
    if quantity < 1:
        raise ApplicationError(
            "The quantity must be at least 1.",
            code="invalid_quantity",
            fields={"quantity": ["Must be at least 1."]},
        )
    job = ProvisioningJob(
        country=country_code_clean(country),
        number_type=number_type_clean(number_type),
        features=",".join(features_clean(features)),
        pattern=pattern_clean(pattern),
        quantity=quantity,
    )
    return job_submit(
        job,
        request=f"Requested {quantity} x {job.country} {job.number_type} ({job.features})"
        + (f" matching {job.pattern}" if job.pattern else ""),
        requested_by=requested_by,
    )


def job_submit(job: ProvisioningJob, *, request: str, requested_by: Any) -> ProvisioningJob:
    """Save a new job (buy or sync) with its first log line: what was asked, and by whom (a
    staff user; a command has none)."""
    job.requested_by = requested_by if getattr(requested_by, "pk", None) else None
    job.log_entry(request + (f" by {requested_by}" if job.requested_by else "") + ".")
    with transaction.atomic():
        job.save()
    return job


def provisioning_jobs_run_pending(*, limit: int = 1) -> list[ProvisioningJob]:
    """Run up to `limit` pending jobs, oldest first (the embedded worker's share of the work).

    A job another worker claimed meanwhile is skipped: `provisioning_job_run` lets one claim it.
    """
    pending = (
        ProvisioningJob.objects.filter(status=ProvisioningJob.Status.PENDING)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    finished = []
    for job_id in list(pending):
        try:
            job = ProvisioningJob.objects.get(pk=job_id)
            finished.append(provisioning_job_run(job=job, pending_only=True))
        except ApplicationError as exc:
            logger.info("Provisioning job %s not run: %s", job_id, exc.detail)
    return finished


class _JobRun:
    """One run of a provisioning job: the steps, each logged and saved as it happens."""

    def __init__(self, job: ProvisioningJob, on_step: StepCallback | None) -> None:
        self.job = job
        self.on_step = on_step
        self.webhook_url = inbound_webhook_url()
        self.features = tuple(job.features.split(","))
        # Why the run ended short, when it did.
        self.failure = ""

    def log(self, message: str, *, level: str = "info") -> None:
        entry = self.job.log_entry(message, level=level)
        with transaction.atomic():
            self.job.save(update_fields=["log"])
        self.emit(entry)

    def emit(self, entry: dict[str, Any]) -> None:
        message, level = entry["message"], entry["level"]
        if self.on_step is not None:
            self.on_step(entry)
        else:  # nobody is watching the steps (a worker, the admin): they go to the log
            logger.log(
                logging.WARNING if level == "error" else logging.INFO,
                "Provisioning job %s: %s",
                self.job.pk,
                message,
            )

    @cached_property
    def provider(self) -> SmsProvider:
        # Resolved inside the run's error handling: a misconfigured provider fails the job.
        return gateway.get_provider()

    def rented(self) -> list[VirtualNumber]:
        return list(provisioning_job_numbers(job=self.job))

    def configure(self, number: VirtualNumber) -> bool:
        try:
            self.provider.configure_number(
                country=number.country, msisdn=number.msisdn, inbound_url=self.webhook_url
            )
        except ProviderError as exc:
            with transaction.atomic():
                job_outcome_record(
                    job=self.job,
                    msisdn=number.msisdn,
                    outcome=JobNumberOutcome.Outcome.FAILED,
                    reason=f"bought, but configuring its webhook failed: {exc}",
                )
            self.log(f"Configuring {number.msisdn} failed: {exc}", level="error")
            self.failure = f"configuring {number.msisdn} failed: {exc}"
            return False
        number_mark_configured(number=number, url=self.webhook_url)
        with transaction.atomic():
            job_outcome_record(
                job=self.job, msisdn=number.msisdn, outcome=JobNumberOutcome.Outcome.CONFIGURED
            )
        self.log(f"Configured {number.msisdn}: inbound SMS go to {self.webhook_url}.")
        return True

    def buy(self, candidate: AvailableNumber) -> VirtualNumber | None:
        try:
            self.provider.buy_number(country=candidate.country, msisdn=candidate.msisdn)
        except NumberUnavailableError as exc:
            with transaction.atomic():
                job_outcome_record(
                    job=self.job,
                    msisdn=candidate.msisdn,
                    outcome=JobNumberOutcome.Outcome.FAILED,
                    reason=f"no longer available ({exc.text})",
                )
            self.log(
                f"{candidate.msisdn} is no longer available ({exc.text}); trying the next one.",
                level="error",
            )
            return None
        number = _number_record_rented(candidate=candidate, job=self.job)
        cost = f" at {candidate.monthly_cost}/month" if candidate.monthly_cost is not None else ""
        self.log(f"Bought {number.msisdn}{cost}.")
        return number

    def search(self, *, needed: int, tried: set[str]) -> list[AvailableNumber]:
        size = min(MAX_SEARCH_SIZE, needed + len(tried) + 10)
        offered = self.provider.search_numbers(
            country=self.job.country,
            type=self.job.number_type,
            features=self.features,
            pattern=self.job.pattern,
            size=size,
        )
        skipped = tried | pool_active_msisdns(offered)
        candidates = [offer for offer in offered if offer.msisdn not in skipped]
        self.log(
            f"Search found {len(offered)} number(s), {len(candidates)} new candidate(s)"
            f" for {needed} still needed."
        )
        return candidates

    def run(self) -> None:
        # 1. Numbers an earlier run bought but could not configure: configure, never re-buy.
        rented = self.rented()
        for number in rented:
            if not number_is_configured(number=number) and not self.configure(number):
                return
        # 2. Buy (and configure) what is still missing, one number at a time.
        needed = self.job.quantity - len(rented)
        tried: set[str] = set()
        fruitless = 0
        while needed > 0 and fruitless < MAX_FRUITLESS_SEARCHES:
            candidates = self.search(needed=needed, tried=tried)
            if not candidates:
                break
            fruitless += 1
            for candidate in candidates:
                tried.add(candidate.msisdn)
                bought = self.buy(candidate)
                if bought is None:
                    continue
                fruitless = 0
                if not self.configure(bought):
                    return
                needed -= 1
                if needed == 0:
                    return
        if needed > 0:
            self.failure = (
                f"no more numbers available in {self.job.country} matching the request "
                f"({needed} still needed)"
            )


def provisioning_job_run(
    *, job: ProvisioningJob, on_step: StepCallback | None = None, pending_only: bool = False
) -> ProvisioningJob:
    """Rent what the job still lacks, logging each step; ends succeeded, partial or failed.

    A job that ended partial or failed can be run again: numbers it bought but could not
    configure are configured first, and only the remaining quantity is bought. Workers pass
    `pending_only`: a job they were handed that another worker has run meanwhile (a Celery
    task redelivered, two embedded workers) is not run twice.
    """
    with transaction.atomic():
        job = ProvisioningJob.objects.select_for_update().get(pk=job.pk)
        if job.status == ProvisioningJob.Status.RUNNING and not provisioning_job_is_stale(job=job):
            raise ApplicationError(
                f"{job} is already running.", code="job_running", status=HTTPStatus.CONFLICT
            )
        if job.status == ProvisioningJob.Status.SUCCEEDED:
            raise ApplicationError(
                f"{job} has already succeeded.", code="job_finished", status=HTTPStatus.CONFLICT
            )
        if pending_only and job.status != ProvisioningJob.Status.PENDING:
            raise ApplicationError(
                f"{job} is {job.get_status_display().lower()}, no longer pending.",
                code="job_not_pending",
                status=HTTPStatus.CONFLICT,
            )
        job.status = ProvisioningJob.Status.RUNNING
        job.started_at = timezone.now()
        job.finished_at = None
        job.error = ""
        job.save(update_fields=["status", "started_at", "finished_at", "error"])

    step = _JobRun(job, on_step)
    step.log("Run started.")
    try:
        if job.kind == ProvisioningJob.Kind.SYNC:
            step.failure = sync_job_body(job=job, log=step.log)
        else:
            step.run()
    except ProviderError as exc:
        step.failure = str(exc)
        step.log(f"Provider error: {exc}", level="error")
    except Exception as exc:
        # Recorded on the job (staff see it in the admin), then re-raised for the caller's logs.
        step.failure = f"unexpected error: {exc!r}"
        step.log(f"Unexpected error: {exc!r}", level="error")
        _provisioning_job_finish(step)
        raise
    return _provisioning_job_finish(step)


def _provisioning_job_finish(step: _JobRun) -> ProvisioningJob:
    job = step.job
    if job.kind == ProvisioningJob.Kind.SYNC:
        return _sync_job_finish(step)
    numbers = step.rented()
    configured = [number for number in numbers if number_is_configured(number=number)]
    if len(configured) >= job.quantity:
        job.status = ProvisioningJob.Status.SUCCEEDED
        job.error = ""
        summary = f"Succeeded: {len(configured)} number(s) rented and configured."
    else:
        job.status = ProvisioningJob.Status.PARTIAL if numbers else ProvisioningJob.Status.FAILED
        reason = step.failure or "the provider did not offer enough numbers"
        job.error = f"Rented and configured {len(configured)} of {job.quantity} number(s): {reason}"
        summary = f"{job.get_status_display()}: {job.error}"
    job.finished_at = timezone.now()
    entry = job.log_entry(summary, level="info" if job.status == job.Status.SUCCEEDED else "error")
    with transaction.atomic():
        job.save(update_fields=["status", "error", "finished_at", "log"])
    step.emit(entry)
    return job


def _sync_job_finish(step: _JobRun) -> ProvisioningJob:
    """Succeeded, or partial when some numbers were not synced, or failed with nothing synced."""
    job = step.job
    if not step.failure:
        job.status, job.error = ProvisioningJob.Status.SUCCEEDED, ""
    else:
        synced = job.outcomes.exclude(outcome=JobNumberOutcome.Outcome.FAILED).exists()
        job.status = ProvisioningJob.Status.PARTIAL if synced else ProvisioningJob.Status.FAILED
        job.error = step.failure
    job.finished_at = timezone.now()
    summary = f"{job.get_status_display()}" + (f": {job.error}" if job.error else ".")
    entry = job.log_entry(summary, level="info" if not job.error else "error")
    with transaction.atomic():
        job.save(update_fields=["status", "error", "finished_at", "log"])
    step.emit(entry)
    return job


def _number_record_rented(*, candidate: AvailableNumber, job: ProvisioningJob) -> VirtualNumber:
    """Write the row for a number just bought (a released row of the same msisdn comes back)."""
    now = timezone.now()
    with transaction.atomic():
        number, _created = VirtualNumber.objects.select_for_update().update_or_create(
            msisdn=candidate.msisdn,
            defaults={
                "country": candidate.country or job.country,
                "number_type": candidate.type or job.number_type,
                "features": ",".join(sorted(candidate.features)) or job.features,
                "monthly_cost": candidate.monthly_cost,
                "status": VirtualNumber.Status.ACTIVE,
                "reserved": False,
                "inbound_webhook_url": "",
                "configured_at": None,
                "rented_at": now,
                "released_at": None,
                "provisioning_job": job,
            },
        )
        job_outcome_record(job=job, msisdn=number.msisdn, outcome=JobNumberOutcome.Outcome.BOUGHT)
    return number
