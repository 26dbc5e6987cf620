"""Submitting and starting jobs on the pool: running one here, or handing it to a worker.

Its own module because it queues the Celery task, and the task (smsproxy.numbers.tasks) runs
the job through `provisioning`: kept apart, neither module imports the other's importer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import transaction

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE
from smsproxy.numbers.models import ProvisioningJob
from smsproxy.numbers.selectors import provisioning_job_is_runnable
from smsproxy.numbers.services.common import (
    country_code_clean,
    features_clean,
    number_type_clean,
    provider_description,
)
from smsproxy.numbers.services.offer import offer_check
from smsproxy.numbers.services.provisioning import (
    StepCallback,
    job_submit,
    provisioning_job_create,
    provisioning_job_run,
)

logger = logging.getLogger(__name__)


class JobHandOff(StrEnum):
    QUEUED = "queued"  # on the Celery broker: a Celery worker runs it
    PENDING = "pending"  # no broker: the embedded worker (run_outbox) runs it
    FINISHED = "finished"  # run in the caller's process (provision_numbers), now over


@dataclass(frozen=True)
class JobStart:
    job: ProvisioningJob
    hand_off: JobHandOff


def provisioning_job_start(
    *, job: ProvisioningJob, foreground: bool = False, on_step: StepCallback | None = None
) -> JobStart:
    """Start a job, or start again one that is pending, partial, failed or left running stale.

    The one way the admin ("Buy numbers", "Sync from Vonage", "Run again"), `provision_numbers`
    and `sync_numbers` run a job, whatever its kind.
    In the foreground it runs here, step by step (the command prints them). Otherwise it never
    runs in the caller's process (an admin request would rent up to 50 numbers while staff
    wait): with CELERY_BROKER_URL it is queued as a Celery task; without a broker it is left
    pending, and the embedded worker (`run_outbox`) runs pending jobs in its loop.

    Raises ApplicationError when the job may not run now (running, succeeded) or the broker
    cannot be reached; the job then stays pending and can be started again.
    """
    if foreground:
        return JobStart(
            job=provisioning_job_run(job=job, on_step=on_step), hand_off=JobHandOff.FINISHED
        )
    job = _provisioning_job_queue(job=job)
    if not settings.CELERY_BROKER_URL:
        return JobStart(job=job, hand_off=JobHandOff.PENDING)
    # Celery is imported only here, with a broker (start-up time of every other process);
    # importing the app first binds the shared task to it, not to Celery's unconfigured default.
    from kombu.exceptions import KombuError

    import smsproxy.celery  # noqa: F401
    from smsproxy.numbers.tasks import provisioning_job_run_task

    # Not deferred with on_commit: the job was committed above, so a worker finds it, and
    # queuing now lets staff be told at once when the broker cannot be reached.
    try:
        provisioning_job_run_task.delay(job.pk)
    except (KombuError, OSError) as exc:
        logger.warning("Could not queue provisioning job %s: %s", job.pk, exc)
        raise ApplicationError(
            f"{job} could not be handed to a worker ({exc}); it stays pending. "
            "Start it again (Run again) once the broker answers.",
            code="broker_unavailable",
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        ) from exc
    return JobStart(job=job, hand_off=JobHandOff.QUEUED)


def _provisioning_job_queue(*, job: ProvisioningJob) -> ProvisioningJob:
    """Mark a runnable job pending, for a worker to claim."""
    with transaction.atomic():
        job = ProvisioningJob.objects.select_for_update().get(pk=job.pk)
        if not provisioning_job_is_runnable(job=job):
            raise ApplicationError(
                f"{job} is {job.get_status_display().lower()}.",
                code="job_finished"
                if job.status == ProvisioningJob.Status.SUCCEEDED
                else "job_running",
                status=HTTPStatus.CONFLICT,
            )
        if job.status != ProvisioningJob.Status.PENDING:
            job.status = ProvisioningJob.Status.PENDING
            job.log_entry("Waiting for a worker to run it again.")
            job.save(update_fields=["status", "log"])
    return job


def provisioning_job_submit(
    *,
    country: str,
    quantity: int,
    number_type: str = DEFAULT_NUMBER_TYPE,
    features: str | tuple[str, ...] | list[str] = ("SMS",),
    pattern: str = "",
    requested_by: Any = None,
) -> ProvisioningJob:
    """Record a rental that staff asked for, refusing up front one the provider cannot serve.

    Staff learn at submission, not from a failed job minutes later, that the provider offers no
    number of this type and features in the country (the pattern is left out: a pattern that
    matches nothing today is the job's to report). A provider that cannot be asked right now
    does not block the request: the job then reports what happens.
    """
    if quantity < 1:
        raise ApplicationError(
            "The quantity must be at least 1.",
            code="invalid_quantity",
            fields={"quantity": ["Must be at least 1."]},
        )
    country = country_code_clean(country)
    number_type = number_type_clean(number_type)
    wanted = features_clean(features)
    offer_check(country=country, number_type=number_type, features=wanted)
    return provisioning_job_create(
        country=country,
        quantity=quantity,
        number_type=number_type,
        features=wanted,
        pattern=pattern,
        requested_by=requested_by,
    )


def sync_job_create(*, country: str = "", requested_by: Any = None) -> ProvisioningJob:
    """Record a request to make the pool match the provider account (every country by default)."""
    job = ProvisioningJob(
        kind=ProvisioningJob.Kind.SYNC,
        country=country_code_clean(country) if country else "",
        quantity=0,
    )
    return job_submit(
        job,
        request=f"Requested a sync with {provider_description()}"
        + (f" in {job.country}" if job.country else ", every country"),
        requested_by=requested_by,
    )
