"""Admin of provisioning jobs: read-only pages and Run again."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.contrib.admin.models import CHANGE
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from smsproxy.numbers.models import ProvisioningJob
from smsproxy.numbers.selectors import JOB_STALE_AFTER
from smsproxy.numbers.services.provisioning import provisioning_job_create, provisioning_job_run
from tests.factories import ProvisioningJobFactory

from ..conftest import SERVER_ERROR, FakeVonage
from .conftest import JOBS, history, run_worker

pytestmark = pytest.mark.django_db


# --- Provisioning jobs ------------------------------------------------------------------------


def test_job_pages(admin_client: Client) -> None:
    done = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=1))
    failed = provisioning_job_run(job=provisioning_job_create(country="FR", quantity=1))

    listing = admin_client.get(JOBS)
    assert listing.status_code == HTTPStatus.OK
    assert {job.pk for job in listing.context["cl"].result_list} == {done.pk, failed.pk}
    filtered = admin_client.get(JOBS, {"status__exact": "failed"})
    assert [job.pk for job in filtered.context["cl"].result_list] == [failed.pk]

    page = admin_client.get(reverse("admin:numbers_provisioningjob_change", args=[failed.pk]))
    assert page.status_code == HTTPStatus.OK
    content = page.content.decode()
    assert "no more numbers available in FR" in content
    assert "Run again" in content
    assert 'name="_save"' not in content  # read-only


def test_jobs_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    job = ProvisioningJobFactory.create()

    assert (
        admin_client.get(reverse("admin:numbers_provisioningjob_add")).status_code
        == HTTPStatus.FORBIDDEN
    )
    delete = reverse("admin:numbers_provisioningjob_delete", args=[job.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    change = reverse("admin:numbers_provisioningjob_change", args=[job.pk])
    admin_client.post(change, {"status": "succeeded", "quantity": "9"})
    job.refresh_from_db()
    assert (job.status, job.quantity) == (ProvisioningJob.Status.PENDING, 1)


def test_run_again_finishes_a_partial_job(admin_client: Client, vonage: FakeVonage) -> None:
    vonage.offer("447700900101")
    vonage.fail("/number/update", "447700900101", SERVER_ERROR)
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=1))
    assert job.status == ProvisioningJob.Status.PARTIAL

    run_url = reverse("admin:numbers_provisioningjob_run", args=[job.pk])
    admin_client.post(run_url)
    run_worker()

    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert len(vonage.calls("/number/buy")) == 1
    page_url = reverse("admin:numbers_provisioningjob_change", args=[job.pk])
    assert "Run again" not in admin_client.get(page_url).content.decode()
    assert history(job) == [(CHANGE, "Ran the job again.")]

    again = admin_client.post(run_url, follow=True)
    assert "is succeeded" in again.content.decode()
    assert admin_client.get(run_url).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_a_job_left_running_by_a_dead_worker_can_be_run_again(admin_client: Client) -> None:
    job = provisioning_job_create(country="GB", quantity=1)
    ProvisioningJob.objects.filter(pk=job.pk).update(
        status=ProvisioningJob.Status.RUNNING, started_at=timezone.now() - timedelta(minutes=1)
    )
    page_url = reverse("admin:numbers_provisioningjob_change", args=[job.pk])
    run_url = reverse("admin:numbers_provisioningjob_run", args=[job.pk])

    # Running (recently started): the page follows it, and it cannot be started twice.
    page = admin_client.get(page_url).content.decode()
    assert 'http-equiv="refresh"' in page
    assert "Run again" not in page
    assert "is running" in admin_client.post(run_url, follow=True).content.decode()

    # Its worker died: after JOB_STALE_AFTER staff can run it again, and the page stops reloading.
    silent_since = timezone.now() - JOB_STALE_AFTER - timedelta(minutes=1)
    ProvisioningJob.objects.filter(pk=job.pk).update(
        started_at=silent_since,
        log=[{**entry, "at": silent_since.isoformat()} for entry in job.log],
    )
    page = admin_client.get(page_url).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert "Run again" in page

    admin_client.post(run_url)
    run_worker()

    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.SUCCEEDED
