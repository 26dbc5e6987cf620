"""Starting provisioning jobs: one service for the admin and provision_numbers (sandbox)."""

from __future__ import annotations

from typing import Any

import pytest

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers import tasks as numbers_tasks
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.services.provisioning import (
    provisioning_job_create,
    provisioning_job_run,
    provisioning_jobs_run_pending,
)
from smsproxy.numbers.services.provisioning_start import JobHandOff, provisioning_job_start

pytestmark = pytest.mark.django_db


def test_without_a_broker_the_job_waits_for_the_embedded_worker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = ""
    job = provisioning_job_create(country="GB", quantity=2)

    started = provisioning_job_start(job=job)

    assert started.hand_off == JobHandOff.PENDING
    assert started.job.status == ProvisioningJob.Status.PENDING
    assert not VirtualNumber.objects.exists()  # nothing rented by the caller
    [finished] = provisioning_jobs_run_pending()
    assert finished.pk == job.pk and finished.status == ProvisioningJob.Status.SUCCEEDED
    assert provisioning_jobs_run_pending() == []


def test_with_a_broker_the_job_is_queued(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CELERY_BROKER_URL = "redis://localhost:6379/0"
    queued: list[int] = []
    monkeypatch.setattr(numbers_tasks.provisioning_job_run_task, "delay", queued.append)
    job = provisioning_job_create(country="GB", quantity=1)

    started = provisioning_job_start(job=job)

    assert (started.hand_off, queued) == (JobHandOff.QUEUED, [job.pk])
    assert not VirtualNumber.objects.exists()


def test_in_the_foreground_the_job_runs_here_reporting_each_step() -> None:
    job = provisioning_job_create(country="GB", quantity=1)
    steps: list[str] = []

    started = provisioning_job_start(
        job=job, foreground=True, on_step=lambda entry: steps.append(entry["message"])
    )

    assert started.hand_off == JobHandOff.FINISHED
    assert started.job.status == ProvisioningJob.Status.SUCCEEDED
    assert steps[0] == "Run started." and steps[-1].startswith("Succeeded")


def test_a_partial_job_started_again_goes_back_to_pending_for_the_worker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = ""
    job = provisioning_job_create(country="GB", quantity=1)
    ProvisioningJob.objects.filter(pk=job.pk).update(status=ProvisioningJob.Status.PARTIAL)

    assert provisioning_job_start(job=job).job.status == ProvisioningJob.Status.PENDING
    assert [finished.pk for finished in provisioning_jobs_run_pending()] == [job.pk]


def test_a_succeeded_job_is_not_started_again() -> None:
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=1))

    with pytest.raises(ApplicationError) as error:
        provisioning_job_start(job=job)

    assert error.value.code == "job_finished"


def test_a_worker_does_not_run_a_job_that_is_no_longer_pending() -> None:
    # A redelivered Celery task, or two embedded workers: the job ran meanwhile and ended
    # partial; running it again would be a retry nobody asked for.
    job = provisioning_job_create(country="GB", quantity=1)
    ProvisioningJob.objects.filter(pk=job.pk).update(status=ProvisioningJob.Status.PARTIAL)

    assert numbers_tasks.provisioning_job_run_task(job.pk) == "job_not_pending"
    with pytest.raises(ApplicationError) as error:
        provisioning_job_run(job=job, pending_only=True)
    assert error.value.code == "job_not_pending"
