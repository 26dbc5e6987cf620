"""The body of a sync job ("Sync from Vonage", `sync_numbers`): run by `provisioning_job_run`."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.admin.models import ADDITION, CHANGE
from django.db import transaction

from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber
from smsproxy.numbers.services.common import job_outcome_record, provider_description
from smsproxy.numbers.services.sync import numbers_sync

Outcome = JobNumberOutcome.Outcome

# How each group of a sync result reads in the pool's admin history.
_HISTORY: dict[str, tuple[int, str]] = {
    Outcome.ADDED: (ADDITION, "Imported by {job} from {source}."),
    Outcome.UPDATED: (CHANGE, "Updated by {job} from {source}."),
    Outcome.RETIRED: (
        CHANGE,
        "Status: active → released by {job}: {source} no longer rents it.",
    ),
}


def sync_job_body(*, job: ProvisioningJob, log: Callable[..., None]) -> str:
    """Sync the pool with the provider; returns why it fell short, or "" when all synced.

    Each number synced becomes an outcome row of the job; the staff member who asked gets an
    admin history entry on every number the sync added, changed or released.
    """
    source = provider_description()
    scope = f" in {job.country}" if job.country else ""
    log(f"Listing the numbers {source} rents{scope}.")
    try:
        result = numbers_sync(country=job.country)
    except ApplicationError as exc:
        log(exc.detail, level="error")
        return exc.detail
    groups: list[tuple[str, list[VirtualNumber]]] = [
        (Outcome.ADDED, result.added),
        (Outcome.UPDATED, result.updated),
        (Outcome.UNCHANGED, result.unchanged),
        (Outcome.RETIRED, result.retired),
    ]
    with transaction.atomic():
        for outcome, numbers in groups:
            for number in numbers:
                job_outcome_record(job=job, msisdn=number.msisdn, outcome=outcome)
                if outcome in _HISTORY:
                    flag, message = _HISTORY[outcome]
                    audit_change(
                        actor=job.requested_by,
                        obj=number,
                        change=message.format(job=f"sync job #{job.pk}", source=source),
                        flag=flag,
                    )
        for failure in result.failed:
            msisdn, _, why = failure.partition(": ")
            job_outcome_record(job=job, msisdn=msisdn, outcome=Outcome.FAILED, reason=why)
    for failure in result.failed:
        log(f"Not synced: {failure}", level="error")
    log(f"Synced from {source}: {result.summary}.")
    if result.failed:
        return f"{len(result.failed)} number(s) not synced (database conflict); run it again"
    return ""
