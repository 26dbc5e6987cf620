"""Number pool services against Vonage, faked at the HTTP boundary (the real SDK runs)."""

from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus

import pytest
from django.db import OperationalError
from django.db.models import QuerySet
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import JOB_STALE_AFTER
from smsproxy.numbers.services import provisioning
from smsproxy.numbers.services import sync as sync_services
from smsproxy.numbers.services.common import RELEASE_CANCEL_WINDOW
from smsproxy.numbers.services.offer import numbers_available_search
from smsproxy.numbers.services.provisioning import (
    provisioning_job_create,
    provisioning_job_run,
)
from smsproxy.numbers.services.rental import number_configure, number_release, number_rent_one
from smsproxy.numbers.services.sync import numbers_sync
from smsproxy.proxy.models import Conversation
from tests.factories import ParticipantFactory, VirtualNumberFactory

from .conftest import NOT_AVAILABLE, SERVER_ERROR, WEBHOOK_URL, FakeVonage

pytestmark = pytest.mark.django_db


def _job(quantity: int = 1, **kwargs: object) -> ProvisioningJob:
    return provisioning_job_create(country="GB", quantity=quantity, **kwargs)  # type: ignore[arg-type]


def _messages(job: ProvisioningJob) -> list[str]:
    return [entry["message"] for entry in job.log]


def test_job_rents_and_configures_numbers(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900102", "447700900103")

    job = provisioning_job_run(job=_job(2))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert job.error == ""
    assert job.started_at is not None and job.finished_at is not None
    numbers = list(VirtualNumber.objects.order_by("msisdn"))
    assert [number.msisdn for number in numbers] == ["+447700900101", "+447700900102"]
    for number in numbers:
        assert number.provisioning_job == job
        assert number.inbound_webhook_url == WEBHOOK_URL
        assert number.configured_at is not None
        assert number.features == "SMS,VOICE"
        assert str(number.monthly_cost) == "1.2500"
        assert vonage.owned[number.msisdn.removeprefix("+")]["moHttpUrl"] == WEBHOOK_URL
    assert [call["msisdn"] for call in vonage.calls("/number/buy")] == [
        "447700900101",
        "447700900102",
    ]
    search = vonage.calls("/number/search")[0]
    assert search["country"] == "GB"
    assert search["type"] == "mobile-lvn"
    assert search["features"] == "SMS"
    log = _messages(job)
    assert any("Bought +447700900101" in line for line in log)
    assert any("Configured +447700900102" in line for line in log)
    assert log[-1].startswith("Succeeded")


def test_job_passes_pattern_and_features(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900777")

    job = provisioning_job_run(job=_job(1, pattern="777", features="voice,sms"))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    search = vonage.calls("/number/search")[0]
    assert search["pattern"] == "777"
    assert search["search_pattern"] == "1"
    assert search["features"] == "SMS,VOICE"
    assert VirtualNumber.objects.get().msisdn == "+447700900777"


def test_job_with_no_numbers_on_offer_fails(vonage: FakeVonage) -> None:
    job = provisioning_job_run(job=_job(2))

    assert job.status == ProvisioningJob.Status.FAILED
    assert "Rented and configured 0 of 2" in job.error
    assert "no more numbers available in GB" in job.error
    assert not VirtualNumber.objects.exists()
    assert vonage.calls("/number/buy") == []


def test_number_taken_between_search_and_buy_is_skipped(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900102")
    vonage.fail("/number/buy", "447700900101", NOT_AVAILABLE)

    job = provisioning_job_run(job=_job(1))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert list(VirtualNumber.objects.values_list("msisdn", flat=True)) == ["+447700900102"]
    assert any("+447700900101 is no longer available" in line for line in _messages(job))


def test_partial_job_when_the_offer_runs_out(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900102")
    vonage.fail("/number/buy", "447700900102", NOT_AVAILABLE)

    job = provisioning_job_run(job=_job(3))

    assert job.status == ProvisioningJob.Status.PARTIAL
    assert "Rented and configured 1 of 3" in job.error
    assert VirtualNumber.objects.get().msisdn == "+447700900101"


def test_configure_failure_then_rerun_configures_without_buying_again(
    vonage: FakeVonage,
) -> None:
    vonage.offer("447700900101", "447700900102")
    vonage.fail("/number/update", "447700900101", SERVER_ERROR)

    job = provisioning_job_run(job=_job(1))

    # The number was bought: its row exists (never lost), unconfigured, and the job says why.
    assert job.status == ProvisioningJob.Status.PARTIAL
    assert "configuring +447700900101 failed" in job.error
    number = VirtualNumber.objects.get()
    assert number.msisdn == "+447700900101"
    assert number.provisioning_job == job
    assert number.configured_at is None
    assert number.inbound_webhook_url == ""

    job = provisioning_job_run(job=job)

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert len(vonage.calls("/number/buy")) == 1
    assert len(vonage.calls("/number/update")) == 2
    assert VirtualNumber.objects.count() == 1
    number.refresh_from_db()
    assert number.inbound_webhook_url == WEBHOOK_URL
    assert vonage.owned["447700900101"]["moHttpUrl"] == WEBHOOK_URL


def test_transient_buy_error_ends_the_job_keeping_what_was_bought(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900102", "447700900103")
    vonage.fail("/number/buy", "447700900102", SERVER_ERROR)

    job = provisioning_job_run(job=_job(3))

    assert job.status == ProvisioningJob.Status.PARTIAL
    assert "HTTP 500" in job.error
    assert list(VirtualNumber.objects.values_list("msisdn", flat=True)) == ["+447700900101"]
    # A re-run buys only what is missing.
    job = provisioning_job_run(job=job)
    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert VirtualNumber.objects.filter(provisioning_job=job).count() == 3


def test_search_failure_fails_the_job(vonage: FakeVonage) -> None:
    vonage.search_failure = (401, {"type": "unauthorized", "title": "Bad credentials"})

    job = provisioning_job_run(job=_job(1))

    assert job.status == ProvisioningJob.Status.FAILED
    assert "401" in job.error


def test_a_succeeded_or_running_job_is_not_run_again(vonage: FakeVonage) -> None:
    vonage.offer("447700900101")
    job = provisioning_job_run(job=_job(1))

    with pytest.raises(ApplicationError) as finished:
        provisioning_job_run(job=job)
    assert finished.value.code == "job_finished"

    running = _job(1)
    ProvisioningJob.objects.filter(pk=running.pk).update(
        status=ProvisioningJob.Status.RUNNING, started_at=timezone.now()
    )
    with pytest.raises(ApplicationError) as busy:
        provisioning_job_run(job=running)
    assert busy.value.code == "job_running"


def _running_since(job: ProvisioningJob, *, started: timedelta, last_logged: timedelta) -> None:
    """Make `job` look run by a worker that started `started` ago and logged `last_logged` ago."""
    now = timezone.now()
    log = [{**entry, "at": (now - last_logged).isoformat()} for entry in job.log]
    ProvisioningJob.objects.filter(pk=job.pk).update(
        status=ProvisioningJob.Status.RUNNING, started_at=now - started, log=log
    )


def test_a_stale_running_job_may_run_again(vonage: FakeVonage) -> None:
    vonage.offer("447700900101")
    job = _job(1)
    _running_since(
        job, started=timedelta(hours=1), last_logged=JOB_STALE_AFTER + timedelta(minutes=1)
    )

    assert provisioning_job_run(job=job).status == ProvisioningJob.Status.SUCCEEDED


def test_a_long_job_still_logging_is_not_stale(vonage: FakeVonage) -> None:
    """Staleness counts from the last log entry, not the start: 50 numbers can take a while."""
    vonage.offer("447700900101")
    job = _job(1)
    _running_since(job, started=timedelta(hours=1), last_logged=timedelta(minutes=1))

    with pytest.raises(ApplicationError) as busy:
        provisioning_job_run(job=job)
    assert busy.value.code == "job_running"
    assert vonage.calls("/number/buy") == []


def test_job_skips_numbers_the_pool_already_has(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.offer("447700900101", "447700900102")

    job = provisioning_job_run(job=_job(1))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert [call["msisdn"] for call in vonage.calls("/number/buy")] == ["447700900102"]


def test_rebuying_a_released_number_reactivates_its_row(vonage: FakeVonage) -> None:
    old = VirtualNumberFactory.create(
        msisdn="+447700900101",
        status=VirtualNumber.Status.RELEASED,
        released_at=timezone.now(),
        reserved=True,
    )
    vonage.offer("447700900101")

    job = provisioning_job_run(job=_job(1))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    old.refresh_from_db()
    assert old.status == VirtualNumber.Status.ACTIVE
    assert old.released_at is None
    assert old.reserved is False
    assert old.provisioning_job == job


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"country": "XX", "quantity": 1}, "invalid_country"),
        ({"country": "GB", "quantity": 0}, "invalid_quantity"),
        ({"country": "GB", "quantity": 1, "number_type": "satellite"}, "invalid_number_type"),
        ({"country": "GB", "quantity": 1, "features": "SMS,FAX"}, "invalid_features"),
        ({"country": "GB", "quantity": 1, "pattern": "77a"}, "invalid_pattern"),
    ],
)
def test_job_create_rejects_bad_input(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(ApplicationError) as error:
        provisioning_job_create(**kwargs)  # type: ignore[arg-type]
    assert error.value.code == code
    assert not ProvisioningJob.objects.exists()


def test_rent_one_returns_a_configured_number(vonage: FakeVonage, admin_user: object) -> None:
    vonage.offer("447700900101")

    number = number_rent_one(country="gb", requested_by=admin_user)

    assert number.msisdn == "+447700900101"
    assert number.inbound_webhook_url == WEBHOOK_URL
    job = ProvisioningJob.objects.get()
    assert job.requested_by == admin_user
    assert job.quantity == 1


def test_rent_one_raises_pool_exhausted(vonage: FakeVonage) -> None:
    with pytest.raises(ApplicationError) as error:
        number_rent_one(country="GB")

    assert error.value.code == "pool_exhausted"
    assert error.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert ProvisioningJob.objects.get().status == ProvisioningJob.Status.FAILED


def test_rent_one_keeps_a_number_it_could_not_configure(vonage: FakeVonage) -> None:
    vonage.offer("447700900101")
    vonage.fail("/number/update", "447700900101", SERVER_ERROR)

    with pytest.raises(ApplicationError) as error:
        number_rent_one(country="GB")

    assert error.value.code == "pool_exhausted"
    assert "configuring +447700900101 failed" in error.value.detail
    number = VirtualNumber.objects.get()
    assert number.configured_at is None  # kept, so `configure_numbers` can finish it


def test_available_search_lists_without_buying(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.offer("447700900101", "447700900102", "447700900103")

    offers = numbers_available_search(country="GB", count=1)

    assert [offer.msisdn for offer in offers] == ["+447700900102"]
    assert vonage.calls("/number/buy") == []


def test_available_search_pages_past_one_search(vonage: FakeVonage) -> None:
    vonage.offer(*(f"4477009{n:05d}" for n in range(150)))

    offers = numbers_available_search(country="GB", count=130)

    assert len(offers) == 130
    assert len({offer.msisdn for offer in offers}) == 130
    assert [call.get("index", "1") for call in vonage.calls("/number/search")] == ["1", "2"]
    assert vonage.calls("/number/buy") == []


def test_available_search_stops_at_the_end_of_the_offer(vonage: FakeVonage) -> None:
    vonage.offer(*(f"4477009{n:05d}" for n in range(120)))

    offers = numbers_available_search(country="GB", count=300)

    assert len(offers) == 120
    assert len(vonage.calls("/number/search")) == 2


def test_job_larger_than_a_search_page_keeps_searching(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A search shows one page (100 numbers on Vonage, 10 here): a larger job searches again as
    # long as the last search rented something.
    monkeypatch.setattr(provisioning, "MAX_SEARCH_SIZE", 10)
    vonage.offer(*(f"4477009{n:05d}" for n in range(60)))

    job = provisioning_job_run(job=_job(45))

    assert job.status == ProvisioningJob.Status.SUCCEEDED, job.error
    assert VirtualNumber.objects.filter(provisioning_job=job).count() == 45
    assert len(vonage.calls("/number/search")) == 5


def test_sync_adds_updates_and_retires(vonage: FakeVonage) -> None:
    kept = VirtualNumberFactory.create(
        msisdn="+447700900101", features="SMS", inbound_webhook_url=""
    )
    gone = VirtualNumberFactory.create(msisdn="+447700900102")
    elsewhere = VirtualNumberFactory.create(msisdn="+15550100001", country="US")
    vonage.rent("447700900101", url=WEBHOOK_URL)
    vonage.rent("447700900199", url="https://old.example.com/sms")

    result = numbers_sync(country="GB")

    assert [number.msisdn for number in result.added] == ["+447700900199"]
    assert [number.msisdn for number in result.updated] == ["+447700900101"]
    assert [number.msisdn for number in result.retired] == ["+447700900102"]
    kept.refresh_from_db()
    assert kept.features == "SMS,VOICE"
    assert kept.inbound_webhook_url == WEBHOOK_URL
    assert kept.configured_at is not None
    assert kept.last_synced_at is not None
    gone.refresh_from_db()
    assert gone.status == VirtualNumber.Status.RELEASED
    assert gone.released_at is not None
    elsewhere.refresh_from_db()
    assert elsewhere.status == VirtualNumber.Status.ACTIVE  # other country, not looked at
    added = VirtualNumber.objects.get(msisdn="+447700900199")
    assert added.inbound_webhook_url == "https://old.example.com/sms"
    assert added.provisioning_job is None
    assert vonage.calls("/account/numbers")[0]["country"] == "GB"

    again = numbers_sync(country="GB")
    assert again.added == again.updated == again.retired == []
    assert len(again.unchanged) == 2


def test_sync_brings_back_a_number_marked_released(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(
        msisdn="+447700900101",
        status=VirtualNumber.Status.RELEASED,
        released_at=timezone.now() - RELEASE_CANCEL_WINDOW - timedelta(seconds=1),
    )
    vonage.rent("447700900101", url=WEBHOOK_URL)

    result = numbers_sync()

    assert result.updated == [number]
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.ACTIVE
    assert number.released_at is None


def test_sync_leaves_a_number_released_while_its_cancellation_may_be_in_flight(
    vonage: FakeVonage,
) -> None:
    # A release commits "released" and then cancels at Vonage: a listing taken in between
    # still shows the number, which must not come back to the pool as rented.
    number = VirtualNumberFactory.create(
        msisdn="+447700900101",
        status=VirtualNumber.Status.RELEASED,
        released_at=timezone.now() - RELEASE_CANCEL_WINDOW + timedelta(seconds=30),
    )
    vonage.rent("447700900101", url=WEBHOOK_URL)

    result = numbers_sync()

    assert result.unchanged == [number] and result.updated == []
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.RELEASED


def test_sync_closes_the_live_conversations_of_a_retired_number(vonage: FakeVonage) -> None:
    gone = VirtualNumberFactory.create(msisdn="+447700900102")
    live = ParticipantFactory.create(proxy_number=gone).conversation
    closed_before = ParticipantFactory.create(proxy_number=gone).conversation
    closed_before.status = Conversation.Status.CLOSED
    closed_before.closed_at = timezone.now()
    closed_before.close_reason = Conversation.CloseReason.API
    closed_before.save()

    result = numbers_sync()

    assert result.retired == [gone]
    assert result.retired_in_use == 1
    assert result.summary.endswith(
        "1 no longer rented (1 of them in live use: their conversations are closed)"
    )
    live.refresh_from_db()
    assert (live.status, live.close_reason) == (Conversation.Status.CLOSED, "staff")
    closed_before.refresh_from_db()
    assert closed_before.close_reason == Conversation.CloseReason.API


def test_sync_leaves_rows_that_changed_while_it_listed(vonage: FakeVonage) -> None:
    # While Vonage compiles the list, a provisioning job records a number it just bought and
    # staff release another: the listing is older than both rows, so neither is touched.
    released_meanwhile = VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.rent("447700900101", url=WEBHOOK_URL)

    def meanwhile() -> None:
        VirtualNumberFactory.create(msisdn="+447700900150")
        VirtualNumber.objects.filter(pk=released_meanwhile.pk).update(
            status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
        )

    vonage.on_list = meanwhile

    result = numbers_sync()

    assert result.retired == result.updated == result.added == []
    bought = VirtualNumber.objects.get(msisdn="+447700900150")
    assert bought.status == VirtualNumber.Status.ACTIVE
    released_meanwhile.refresh_from_db()
    assert released_meanwhile.status == VirtualNumber.Status.RELEASED

    # The next sync, with a listing taken after both changes (and after a cancellation of the
    # released number would have finished: RELEASE_CANCEL_WINDOW), judges them.
    vonage.on_list = None
    VirtualNumber.objects.filter(pk=released_meanwhile.pk).update(
        released_at=timezone.now() - RELEASE_CANCEL_WINDOW - timedelta(seconds=1)
    )
    later = numbers_sync()
    assert [number.msisdn for number in later.retired] == ["+447700900150"]
    assert [number.msisdn for number in later.updated] == ["+447700900101"]


def test_sync_does_not_fail_when_a_job_records_a_number_first(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL: a job commits its row for a number after the sync looked for existing rows
    # (so the sync did not see it) and before the sync inserts its own: the unique msisdn
    # refuses the second row.
    vonage.rent("447700900101", url=WEBHOOK_URL)
    VirtualNumberFactory.create(msisdn="+447700900101", inbound_webhook_url="", configured_at=None)
    lookup = VirtualNumber.objects.select_for_update
    lookups: list[int] = []

    def first_lookup_misses_the_new_row() -> QuerySet[VirtualNumber]:
        lookups.append(1)
        return VirtualNumber.objects.none() if len(lookups) == 1 else lookup()

    monkeypatch.setattr(VirtualNumber.objects, "select_for_update", first_lookup_misses_the_new_row)

    result = numbers_sync()

    assert result.added == []
    assert [number.msisdn for number in result.unchanged] == ["+447700900101"]
    assert VirtualNumber.objects.get().inbound_webhook_url == ""  # the job's row, untouched


def test_a_number_that_loses_a_database_conflict_does_not_undo_the_other_retirements(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = VirtualNumberFactory.create(msisdn="+447700900101")
    second = VirtualNumberFactory.create(msisdn="+447700900102")
    retire = sync_services._unlisted_number_retire

    def second_conflicts(*, number_id: int, listed_at: datetime) -> VirtualNumber | None:
        if number_id == second.pk:
            raise OperationalError("deadlock detected")
        return retire(number_id=number_id, listed_at=listed_at)

    monkeypatch.setattr(sync_services, "_unlisted_number_retire", second_conflicts)

    result = numbers_sync()

    assert result.retired == [first]
    assert result.failed == ["+447700900102: deadlock detected"]
    assert result.summary.endswith("1 no longer rented, 1 not synced (database conflict)")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("released", "active")


def test_sync_failure_changes_nothing(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.list_failure = SERVER_ERROR

    with pytest.raises(ApplicationError) as error:
        numbers_sync()

    assert error.value.code == "provider_error"
    assert "HTTP 500" in error.value.detail
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.ACTIVE


def test_configure_number(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(
        msisdn="+447700900101", inbound_webhook_url="", configured_at=None
    )
    vonage.rent("447700900101")

    number_configure(number=number)

    number.refresh_from_db()
    assert number.inbound_webhook_url == WEBHOOK_URL
    assert vonage.calls("/number/update")[0] == {
        "country": "GB",
        "msisdn": "447700900101",
        "moHttpUrl": WEBHOOK_URL,
    }


def test_configure_failure_is_an_application_error(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(
        msisdn="+447700900101", inbound_webhook_url="", configured_at=None
    )
    vonage.rent("447700900101")
    vonage.fail("/number/update", "447700900101", SERVER_ERROR)

    with pytest.raises(ApplicationError) as error:
        number_configure(number=number)

    assert error.value.code == "provider_error"
    number.refresh_from_db()
    assert number.configured_at is None


def test_release_cancels_the_rental(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.rent("447700900101")

    number_release(number=number)

    assert number.status == VirtualNumber.Status.RELEASED
    assert number.released_at is not None
    assert "447700900101" not in vonage.owned


def test_release_refused_while_in_live_use(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    ParticipantFactory.create(proxy_number=number)
    vonage.rent("447700900101")

    with pytest.raises(ApplicationError) as error:
        number_release(number=number)

    assert error.value.code == "number_in_use"
    assert vonage.calls("/number/cancel") == []
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.ACTIVE


def test_forced_release_closes_the_conversations(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    participant = ParticipantFactory.create(proxy_number=number)
    other = ParticipantFactory.create(conversation=participant.conversation)
    vonage.rent("447700900101")

    number_release(number=number, force=True)

    conversation = participant.conversation
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.close_reason == Conversation.CloseReason.STAFF
    assert conversation.closed_at is not None
    other.refresh_from_db()
    assert other.active is False
    assert number.status == VirtualNumber.Status.RELEASED


def test_release_of_a_number_vonage_no_longer_has(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")

    number_release(number=number)

    assert number.status == VirtualNumber.Status.RELEASED


def test_release_refused_by_vonage_leaves_the_number_released_and_says_vonage_rents_it(
    vonage: FakeVonage,
) -> None:
    # The pool is changed before the provider: a number Vonage refused to cancel stays out of
    # assignment, and the error tells staff it is still rented (and how to fix that).
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.rent("447700900101")
    vonage.fail("/number/cancel", "447700900101", NOT_AVAILABLE)

    with pytest.raises(ApplicationError) as error:
        number_release(number=number)

    assert error.value.code == "provider_error"
    assert "Vonage still rents it" in error.value.detail
    assert "sync_numbers" in error.value.detail
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.RELEASED
    assert "447700900101" in vonage.owned

    # As the error says: a sync brings it back into the pool (once a cancellation still in
    # flight would have finished), and a release then cancels it.
    assert "5 minutes" in error.value.detail
    assert numbers_sync().updated == []
    VirtualNumber.objects.filter(pk=number.pk).update(
        released_at=timezone.now() - RELEASE_CANCEL_WINDOW - timedelta(seconds=1)
    )
    assert numbers_sync().updated == [number]
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.ACTIVE
    number_release(number=number)
    assert number.status == VirtualNumber.Status.RELEASED
    assert "447700900101" not in vonage.owned


def test_release_with_the_provider_down_leaves_the_number_released(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.rent("447700900101")
    vonage.fail("/number/cancel", "447700900101", SERVER_ERROR)

    with pytest.raises(ApplicationError) as error:
        number_release(number=number)

    assert error.value.code == "provider_error"
    assert "Vonage still rents it" in error.value.detail
    number.refresh_from_db()
    assert number.status == VirtualNumber.Status.RELEASED


def test_released_number_cannot_be_released_or_configured(vonage: FakeVonage) -> None:
    number = VirtualNumberFactory.create(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )

    for service in (number_release, number_configure):
        with pytest.raises(ApplicationError) as error:
            service(number=number)
        assert error.value.code == "number_released"
    assert vonage.requests == []
