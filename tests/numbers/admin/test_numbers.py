"""Admin of the number pool: the list, its actions, and the Buy numbers and Sync pages."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from smsproxy.numbers import tasks as numbers_tasks
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.services.provisioning import provisioning_job_create
from tests.factories import ParticipantFactory, ProvisioningJobFactory, VirtualNumberFactory

from ..conftest import WEBHOOK_URL, FakeVonage, rent_sandbox_numbers
from .conftest import BUY, CHANGELIST, SYNC, action, history, run_worker

pytestmark = pytest.mark.django_db


# --- Virtual numbers: list, search, change page ------------------------------------------------


def test_changelist_shows_numbers_buttons_and_usage(admin_client: Client) -> None:
    busy = VirtualNumberFactory.create(msisdn="+447700900001")
    ParticipantFactory.create_batch(2, proxy_number=busy)
    VirtualNumberFactory.create(msisdn="+447700900002", inbound_webhook_url="")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert "+447700900001" in content and "+447700900002" in content
    assert BUY in content and "Buy numbers" in content
    assert SYNC in content and "Sync from Vonage" in content
    rows = {row.msisdn: row for row in response.context["cl"].result_list}
    assert rows["+447700900001"].assigned_participants == 2
    assert rows["+447700900002"].assigned_participants == 0
    assert "Add virtual number" not in content  # numbers come from Buy or Sync only


def test_changelist_has_no_n_plus_one(admin_client: Client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert admin_client.get(CHANGELIST).status_code == HTTPStatus.OK
        return len(context.captured_queries)

    for number in VirtualNumberFactory.create_batch(
        2, provisioning_job=ProvisioningJobFactory.create()
    ):
        ParticipantFactory.create(proxy_number=number)
    few = queries()
    for number in VirtualNumberFactory.create_batch(
        6, provisioning_job=ProvisioningJobFactory.create()
    ):
        ParticipantFactory.create(proxy_number=number)
    assert queries() == few


@pytest.mark.parametrize(
    "params",
    [
        {"country": "US"},
        {"number_type__exact": "landline"},
        {"status__exact": "released"},
        {"reserved__exact": "1"},
        {"q": "+1 555 0100"},
        {"q": "15550100"},
    ],
)
def test_changelist_filters_and_search(admin_client: Client, params: dict[str, str]) -> None:
    VirtualNumberFactory.create(msisdn="+447700900001")
    VirtualNumberFactory.create(
        msisdn="+15550100001",
        country="US",
        number_type="landline",
        status="released",
        released_at=timezone.now(),
        reserved=True,
    )

    response = admin_client.get(CHANGELIST, params)

    assert response.status_code == HTTPStatus.OK
    assert [row.msisdn for row in response.context["cl"].result_list] == ["+15550100001"]


def test_change_page_is_read_only(admin_client: Client) -> None:
    number = VirtualNumberFactory.create()

    response = admin_client.get(reverse("admin:numbers_virtualnumber_change", args=[number.pk]))

    assert response.status_code == HTTPStatus.OK
    assert number.msisdn in response.content.decode()
    assert 'name="reserved"' not in response.content.decode()


def test_no_add_or_delete(admin_client: Client) -> None:
    number = VirtualNumberFactory.create()

    assert (
        admin_client.get(reverse("admin:numbers_virtualnumber_add")).status_code
        == HTTPStatus.FORBIDDEN
    )
    delete = reverse("admin:numbers_virtualnumber_delete", args=[number.pk])
    assert admin_client.get(delete).status_code == HTTPStatus.FORBIDDEN


# --- Actions ----------------------------------------------------------------------------------


def test_configure_webhook_action(admin_client: Client) -> None:
    (number,) = rent_sandbox_numbers(1)
    VirtualNumber.objects.update(inbound_webhook_url="", configured_at=None)
    stranger = VirtualNumberFactory.create(msisdn="+447700900500", inbound_webhook_url="")

    response = action(admin_client, "configure_webhook", [number, stranger])

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert f"Configured 1 number(s) to {WEBHOOK_URL}" in content
    assert "Could not configure +447700900500" in content
    number.refresh_from_db()
    assert number.inbound_webhook_url == WEBHOOK_URL
    assert history(number) == [(CHANGE, f"Configured the inbound webhook: {WEBHOOK_URL}")]
    assert history(stranger) == []


def test_reserve_and_unreserve_actions(admin_client: Client) -> None:
    number = VirtualNumberFactory.create()
    released = VirtualNumberFactory.create(status="released", released_at=timezone.now())

    response = action(admin_client, "reserve", [number, released])
    assert "Reserved 1 number(s)." in response.content.decode()
    assert "was released" in response.content.decode()
    number.refresh_from_db()
    assert number.reserved is True

    action(admin_client, "unreserve", [number])
    number.refresh_from_db()
    assert number.reserved is False
    # Written by the service, in its transaction: old → new.
    assert history(number) == [(CHANGE, "Reserved: no → yes."), (CHANGE, "Reserved: yes → no.")]


def test_release_action_asks_for_confirmation_first(admin_client: Client) -> None:
    first, second = rent_sandbox_numbers(2)

    response = admin_client.post(
        CHANGELIST, {"action": "release", "_selected_action": [first.pk, second.pk]}
    )

    assert response.status_code == HTTPStatus.OK
    assert response.templates[0].name == "admin/numbers/virtualnumber/release_confirmation.html"
    content = response.content.decode()
    assert first.msisdn in content and second.msisdn in content
    assert 'name="post"' in content
    assert 'name="force"' not in content  # nothing in live use
    assert VirtualNumber.objects.filter(status="active").count() == 2


# --- Buy numbers ------------------------------------------------------------------------------


def test_buy_form_renders(admin_client: Client) -> None:
    response = admin_client.get(BUY)

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    for name in ("country", "number_type", "features", "pattern", "quantity"):
        assert f'name="{name}"' in content
    assert WEBHOOK_URL in content


def test_buy_numbers_end_to_end(admin_client: Client, admin_user: Any) -> None:
    response = admin_client.post(
        BUY,
        {"country": "gb", "number_type": "mobile-lvn", "features": ["SMS"], "quantity": "3"},
        follow=True,
    )

    job = ProvisioningJob.objects.get()
    assert response.redirect_chain == [
        (reverse("admin:numbers_provisioningjob_change", args=[job.pk]), HTTPStatus.FOUND)
    ]
    # Nothing is rented in the request: without a broker the embedded worker runs the job.
    assert job.status == ProvisioningJob.Status.PENDING
    assert not VirtualNumber.objects.exists()
    [message] = response.context["messages"]
    assert (message.level, "waiting for the delivery worker" in message.message) == (
        messages.SUCCESS,
        True,
    )
    assert 'http-equiv="refresh"' in response.content.decode()  # follows the job

    run_worker()

    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert job.requested_by == admin_user
    assert VirtualNumber.objects.filter(provisioning_job=job).count() == 3
    response = admin_client.get(reverse("admin:numbers_provisioningjob_change", args=[job.pk]))
    content = response.content.decode()
    assert "succeeded" in content.lower()
    assert "+447700900000" in content  # the numbers rented
    assert "Bought +447700900002" in content  # the log
    assert 'http-equiv="refresh"' not in content  # finished: no reload
    assert history(job) == [(ADDITION, "Requested 3 number(s).")]


def test_buy_that_fails_or_falls_short_is_not_reported_as_success(
    admin_client: Client, vonage: FakeVonage
) -> None:
    # The worker runs the jobs after the request: the job page tells how each one ended.
    form = {"number_type": "mobile-lvn", "features": ["SMS"], "quantity": "2"}
    vonage.offer("33700000001", country="FR")
    admin_client.post(BUY, {"country": "FR", **form})
    vonage.available.clear()  # taken by someone else before the worker ran the job
    run_worker()
    vonage.offer("447700900101")
    admin_client.post(BUY, {"country": "GB", **form})
    run_worker()
    vonage.offer("447700900102")
    job = ProvisioningJob.objects.get(country="GB")
    fr_job = ProvisioningJob.objects.get(country="FR")

    def page(job: ProvisioningJob) -> str:
        url = reverse("admin:numbers_provisioningjob_change", args=[job.pk])
        return admin_client.get(url).content.decode()

    assert "Failed" in page(fr_job) and "Rented and configured 0 of 2" in page(fr_job)
    assert "Partially done" in page(job) and "Rented and configured 1 of 2" in page(job)
    assert "Succeeded" not in page(fr_job) + page(job)

    admin_client.post(reverse("admin:numbers_provisioningjob_run", args=[job.pk]))
    run_worker()

    assert "Succeeded" in page(job)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"country": "XX", "quantity": "1"}, "not an ISO 3166-1 alpha-2 country code"),
        ({"country": "GB", "quantity": "0"}, "greater than or equal to 1"),
        ({"country": "GB", "quantity": "51"}, "less than or equal to 50"),
        ({"country": "GB", "quantity": "1", "pattern": "7x"}, "Digits only."),
        ({"country": "GB", "quantity": "1", "features": ["FAX"]}, "Select a valid choice"),
    ],
)
def test_buy_form_rejects_bad_input(admin_client: Client, data: dict[str, Any], error: str) -> None:
    data = {"number_type": "mobile-lvn", "features": ["SMS"], **data}

    response = admin_client.post(BUY, data)

    assert response.status_code == HTTPStatus.OK
    assert error in response.content.decode()
    assert not ProvisioningJob.objects.exists()


def test_buy_hands_the_job_to_celery_when_a_broker_is_set(
    admin_client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.CELERY_BROKER_URL = "redis://localhost:6379/0"
    queued: list[int] = []
    monkeypatch.setattr(numbers_tasks.provisioning_job_run_task, "delay", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            BUY,
            {"country": "GB", "number_type": "mobile-lvn", "features": ["SMS"], "quantity": "1"},
        )

    job = ProvisioningJob.objects.get()
    assert queued == [job.pk]
    assert job.status == ProvisioningJob.Status.PENDING
    page = admin_client.get(response["Location"])
    assert 'http-equiv="refresh"' in page.content.decode()  # reloads until the job ends
    assert "Run again" in page.content.decode()  # in case the hand-off to the broker was lost

    # Staff start it again (here without a broker: for the embedded worker).
    settings.CELERY_BROKER_URL = ""
    run_url = reverse("admin:numbers_provisioningjob_run", args=[job.pk])
    admin_client.post(run_url)
    run_worker()
    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.SUCCEEDED


def test_buy_with_the_broker_down_keeps_the_job_pending(
    admin_client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CELERY_BROKER_URL = "redis://localhost:6379/0"

    def broker_down(job_id: int) -> None:
        raise OperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(numbers_tasks.provisioning_job_run_task, "delay", broker_down)

    response = admin_client.post(
        BUY,
        {"country": "GB", "number_type": "mobile-lvn", "features": ["SMS"], "quantity": "1"},
        follow=True,
    )

    assert response.status_code == HTTPStatus.OK
    job = ProvisioningJob.objects.get()
    assert job.status == ProvisioningJob.Status.PENDING
    [message] = response.context["messages"]
    assert message.level == messages.ERROR
    assert "could not be handed to a worker" in message.message
    assert "Run again" in response.content.decode()


def test_the_celery_task_runs_the_job() -> None:
    job = provisioning_job_create(country="GB", quantity=1)

    assert numbers_tasks.provisioning_job_run_task(job.pk) == "succeeded"
    # A redelivered task for a finished job does nothing.
    assert numbers_tasks.provisioning_job_run_task(job.pk) == "job_finished"


def test_buy_needs_change_permission(client: Client, django_user_model: Any) -> None:
    staff = django_user_model.objects.create_user("viewer", password="pw-123456", is_staff=True)
    client.force_login(staff)

    assert client.get(BUY).status_code == HTTPStatus.FORBIDDEN
    assert client.post(SYNC).status_code == HTTPStatus.FORBIDDEN


# --- Sync from Vonage ------------------------------------------------------------------------


def test_sync_is_post_only(admin_client: Client) -> None:
    assert admin_client.get(SYNC).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_history_pages(admin_client: Client) -> None:
    (number,) = rent_sandbox_numbers(1)
    action(admin_client, "reserve", [number])
    job = number.provisioning_job
    assert job is not None

    number_history = admin_client.get(
        reverse("admin:numbers_virtualnumber_history", args=[number.pk])
    )
    job_history = admin_client.get(reverse("admin:numbers_provisioningjob_history", args=[job.pk]))

    assert number_history.status_code == job_history.status_code == HTTPStatus.OK
    assert "Reserved: no → yes." in number_history.content.decode()


# --- Permissions and messages of the actions ---------------------------------------------------


def test_a_view_only_user_sees_the_pool_but_no_action(viewer: Client) -> None:
    VirtualNumberFactory.create()

    response = viewer.get(CHANGELIST)

    assert response.status_code == HTTPStatus.OK
    assert response.context["action_form"] is None  # no action offered at all
    content = response.content.decode()
    assert BUY not in content and SYNC not in content


def _assert_refused(response: Any) -> None:
    # The action is not offered to this user, so the post just shows the list again.
    assert response.status_code == HTTPStatus.OK
    assert response.context["action_form"] is None
    assert not LogEntry.objects.exists()


def test_a_view_only_user_cannot_configure_webhooks(viewer: Client, vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(inbound_webhook_url="", configured_at=None)

    _assert_refused(action(viewer, "configure_webhook", [number]))

    assert vonage.requests == []
    number.refresh_from_db()
    assert number.inbound_webhook_url == ""


def test_a_view_only_user_cannot_reserve(viewer: Client) -> None:
    number = VirtualNumberFactory.create()

    _assert_refused(action(viewer, "reserve", [number]))

    number.refresh_from_db()
    assert number.reserved is False


def test_a_view_only_user_cannot_unreserve(viewer: Client) -> None:
    number = VirtualNumberFactory.create(reserved=True)

    _assert_refused(action(viewer, "unreserve", [number]))

    number.refresh_from_db()
    assert number.reserved is True


def test_a_view_only_user_cannot_release(viewer: Client, vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create()

    # Neither the confirmation page nor the confirmed release.
    _assert_refused(action(viewer, "release", [number]))
    _assert_refused(action(viewer, "release", [number], post="yes", force="on"))

    assert vonage.requests == []
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.ACTIVE


def _shown(response: Any) -> list[tuple[int, str]]:
    return [(message.level, message.message) for message in response.context["messages"]]


def test_reserving_numbers_already_reserved_is_not_reported_as_success(
    admin_client: Client,
) -> None:
    reserved = VirtualNumberFactory.create(reserved=True)
    free = VirtualNumberFactory.create()

    nothing = action(admin_client, "reserve", [reserved])
    some = action(admin_client, "reserve", [reserved, free])
    unreserve_nothing = action(admin_client, "unreserve", [VirtualNumberFactory.create()])

    assert _shown(nothing) == [(messages.WARNING, "No number was reserved. 1 already reserved.")]
    assert _shown(some) == [(messages.SUCCESS, "Reserved 1 number(s). 1 already reserved.")]
    assert _shown(unreserve_nothing) == [
        (messages.WARNING, "No number was unreserved. 1 already not reserved.")
    ]


def test_an_action_that_only_failed_says_nothing_changed(admin_client: Client) -> None:
    released = VirtualNumberFactory.create(status="released", released_at=timezone.now())

    response = action(admin_client, "reserve", [released])

    [error, summary] = _shown(response)
    assert error[0] == messages.ERROR and "was released" in error[1]
    assert summary == (messages.WARNING, "No number was reserved. 1 refused (see above).")


def test_configuring_nothing_is_a_warning(admin_client: Client) -> None:
    stranger = VirtualNumberFactory.create(msisdn="+447700900500", inbound_webhook_url="")

    response = action(admin_client, "configure_webhook", [stranger])

    assert _shown(response)[-1] == (
        messages.WARNING,
        "No number was configured. 1 refused (see above).",
    )


def test_releasing_only_released_numbers_is_a_warning(admin_client: Client) -> None:
    released = VirtualNumberFactory.create(status="released", released_at=timezone.now())

    response = action(admin_client, "release", [released], post="yes")

    assert _shown(response) == [(messages.WARNING, "No number was released. 1 already released.")]
