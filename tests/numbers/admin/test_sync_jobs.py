"""Jobs off the request path: "Sync from Vonage" is a job like "Buy numbers"; job pages show
progress and what happened to each number; a country the provider cannot serve is refused when
staff submit the request, not by a failed job later."""

from __future__ import annotations

from http import HTTPStatus
from io import StringIO
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from smsproxy.numbers import tasks as numbers_tasks
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber
from smsproxy.numbers.services.provisioning_start import sync_job_create
from tests.factories import VirtualNumberFactory

from ..conftest import NOT_AVAILABLE, SERVER_ERROR, WEBHOOK_URL, FakeVonage, rent_sandbox_numbers
from .conftest import BUY, CHANGELIST, SYNC, history, run_worker

pytestmark = pytest.mark.django_db

BUY_FORM = {"number_type": "mobile-lvn", "features": ["SMS"], "quantity": "1"}


def _page(client: Client, job: ProvisioningJob) -> str:
    return client.get(
        reverse("admin:numbers_provisioningjob_change", args=[job.pk])
    ).content.decode()


def _outcomes(job: ProvisioningJob) -> list[tuple[str, str, str]]:
    return list(job.outcomes.values_list("msisdn", "outcome", "reason"))


# --- Sync from Vonage is a job -------------------------------------------------------------------


def test_sync_button_starts_a_job_that_the_worker_runs(
    admin_client: Client, admin_user: Any, vonage: FakeVonage
) -> None:
    gone = VirtualNumberFactory.create(msisdn="+447700900102")
    kept = VirtualNumberFactory.create(msisdn="+447700900103", inbound_webhook_url=WEBHOOK_URL)
    vonage.rent("447700900101", url=WEBHOOK_URL)
    vonage.rent("447700900103", url=WEBHOOK_URL)

    response = admin_client.post(SYNC, follow=True)

    job = ProvisioningJob.objects.get()
    assert (job.kind, job.status, job.requested_by) == ("sync", "pending", admin_user)
    assert response.redirect_chain == [
        (reverse("admin:numbers_provisioningjob_change", args=[job.pk]), HTTPStatus.FOUND)
    ]
    content = response.content.decode()
    assert 'http-equiv="refresh"' in content and "Pending: waiting for a worker." in content
    # Nothing synced in the request.
    assert not VirtualNumber.objects.filter(msisdn="+447700900101").exists()

    run_worker()

    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert sorted(_outcomes(job)) == [
        ("+447700900101", "added", ""),
        ("+447700900102", "retired", ""),
        ("+447700900103", "unchanged", ""),
    ]
    page = _page(admin_client, job)
    assert 'http-equiv="refresh"' not in page
    assert "<label>Quantity:</label>" not in page  # a sync rents nothing
    assert (
        "Succeeded: 3 number(s) synced (1 added, 1 no longer rented, released, 1 unchanged)."
        in page
    )
    assert (
        "Synced from the Vonage account: 1 added, 0 updated, 1 unchanged, 1 no longer rented."
        in page
    )
    added = VirtualNumber.objects.get(msisdn="+447700900101")
    assert history(added) == [
        (ADDITION, f"Imported by sync job #{job.pk} from the Vonage account.")
    ]
    assert history(gone) == [
        (
            CHANGE,
            f"Status: active → released by sync job #{job.pk}: the Vonage account no longer "
            "rents it.",
        )
    ]
    assert history(kept) == []


def test_sync_in_sandbox_mode_says_it_synced_from_the_sandbox(admin_client: Client) -> None:
    rent_sandbox_numbers(1)
    VirtualNumber.objects.all().delete()

    changelist = admin_client.get(CHANGELIST).content.decode()
    assert "Sync from Vonage" in changelist  # the label stays; its tooltip names the source
    assert "imports the numbers the sandbox provider" in changelist

    response = admin_client.post(SYNC, follow=True)
    [started] = [m.message for m in response.context["messages"]]
    assert started.startswith("Syncing from the sandbox provider (SMS_PROVIDER=sandbox")
    run_worker()

    job = ProvisioningJob.objects.get(kind="sync")
    assert "Requested a sync with the sandbox provider (SMS_PROVIDER=sandbox" in str(job.log)
    page = _page(admin_client, job)
    assert "Synced from the sandbox provider (SMS_PROVIDER=sandbox: fictitious numbers, no " in page
    assert _outcomes(job) == [("+447700900000", "added", "")]
    assert response.status_code == HTTPStatus.OK


def test_a_sync_that_cannot_list_fails_the_job_with_the_reason(
    admin_client: Client, vonage: FakeVonage
) -> None:
    vonage.list_failure = SERVER_ERROR

    admin_client.post(SYNC)
    run_worker()

    job = ProvisioningJob.objects.get()
    assert job.status == ProvisioningJob.Status.FAILED
    assert "Could not list the account's numbers" in job.error
    assert "Run again" in _page(admin_client, job)

    # Vonage answers again: "Run again" syncs.
    vonage.list_failure = None
    vonage.rent("447700900101", url=WEBHOOK_URL)
    admin_client.post(reverse("admin:numbers_provisioningjob_run", args=[job.pk]))
    run_worker()
    job.refresh_from_db()
    assert (job.status, _outcomes(job)) == ("succeeded", [("+447700900101", "added", "")])


def test_the_sync_job_goes_to_celery_when_a_broker_is_set(
    admin_client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CELERY_BROKER_URL = "redis://localhost:6379/0"
    queued: list[int] = []
    monkeypatch.setattr(numbers_tasks.provisioning_job_run_task, "delay", queued.append)

    admin_client.post(SYNC)

    job = ProvisioningJob.objects.get()
    assert queued == [job.pk]
    # The task a Celery worker runs: the same one as for a purchase.
    assert numbers_tasks.provisioning_job_run_task(job.pk) == ProvisioningJob.Status.SUCCEEDED


def test_a_view_only_user_cannot_sync(viewer: Client) -> None:
    assert viewer.post(SYNC).status_code == HTTPStatus.FORBIDDEN
    assert not ProvisioningJob.objects.exists()


def test_sync_numbers_runs_a_job_in_the_foreground(vonage: FakeVonage) -> None:
    vonage.rent("447700900101", url=WEBHOOK_URL)
    out = StringIO()

    call_command("sync_numbers", "--country", "gb", stdout=out)

    job = ProvisioningJob.objects.get()
    assert (job.kind, job.country, job.status) == ("sync", "GB", "succeeded")
    assert "Listing the numbers the Vonage account rents in GB." in out.getvalue()
    assert "+447700900101: added" in out.getvalue()


# --- Per-number outcomes of a purchase -----------------------------------------------------------


def test_a_purchase_lists_each_number_bought_or_failed_with_the_reason(
    admin_client: Client, vonage: FakeVonage
) -> None:
    vonage.offer("447700900101", "447700900102")
    vonage.fail("/number/buy", "447700900101", NOT_AVAILABLE)
    admin_client.post(BUY, {"country": "GB", **BUY_FORM})
    job = ProvisioningJob.objects.get()

    run_worker()

    assert _outcomes(job) == [
        (
            "+447700900101",
            "failed",
            "no longer available (Vonage answered HTTP 420 to buy number: method failed)",
        ),
        ("+447700900102", "bought", ""),
        ("+447700900102", "configured", ""),
    ]
    page = _page(admin_client, job)
    assert "<label>Quantity:</label>" in page
    assert "Succeeded: 1 of 1 bought, 1 configured, 1 failed." in page
    assert "no longer available (Vonage answered HTTP 420" in page
    assert '<table class="job-outcomes">' in page


def test_a_number_bought_but_not_configured_is_a_failed_outcome(vonage: FakeVonage) -> None:
    vonage.offer("447700900101")
    vonage.fail("/number/update", "447700900101", SERVER_ERROR)

    with pytest.raises(CommandError, match="partially done"):
        call_command("provision_numbers", "--country", "GB", stdout=StringIO())

    job = ProvisioningJob.objects.get()
    [bought, failed] = job.outcomes.all()
    assert (bought.outcome, failed.outcome) == ("bought", JobNumberOutcome.Outcome.FAILED)
    assert failed.reason.startswith("bought, but configuring its webhook failed:")


def test_the_job_list_shows_the_kind(admin_client: Client) -> None:
    sync_job_create()
    listing = admin_client.get(reverse("admin:numbers_provisioningjob_changelist"))
    assert "Sync from provider" in listing.content.decode()
    filtered = admin_client.get(
        reverse("admin:numbers_provisioningjob_changelist"), {"kind__exact": "sync"}
    )
    assert len(filtered.context["cl"].result_list) == 1


# --- A country the provider cannot serve is refused up front -----------------------------------


def test_buying_in_a_country_the_sandbox_cannot_serve_is_refused_on_the_form(
    admin_client: Client,
) -> None:
    response = admin_client.post(BUY, {"country": "FR", **BUY_FORM})

    assert response.status_code == HTTPStatus.OK  # the form again, with the reason
    [error] = response.context["form"].errors["country"]
    assert error.startswith("The sandbox provider (SMS_PROVIDER=sandbox: fictitious numbers, no ")
    assert "offers no mobile-lvn numbers with SMS in FR: a job would rent nothing" in error
    assert error.endswith("The sandbox rents fictitious GB and US numbers only.")
    assert not ProvisioningJob.objects.exists()


def test_provision_numbers_refuses_a_country_vonage_does_not_serve(vonage: FakeVonage) -> None:
    with pytest.raises(
        CommandError, match="The Vonage account offers no mobile-lvn numbers with SMS in FR"
    ):
        call_command("provision_numbers", "--country", "FR", stdout=StringIO())
    assert not ProvisioningJob.objects.exists()


def test_a_provider_that_cannot_be_asked_does_not_block_the_request(
    admin_client: Client, vonage: FakeVonage
) -> None:
    vonage.search_failure = SERVER_ERROR

    response = admin_client.post(BUY, {"country": "GB", **BUY_FORM}, follow=True)

    assert ProvisioningJob.objects.get().status == ProvisioningJob.Status.PENDING
    assert [m.level for m in response.context["messages"]] == [messages.SUCCESS]
