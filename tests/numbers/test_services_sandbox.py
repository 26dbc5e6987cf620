"""The same pool flows on the sandbox provider (the default of the test settings)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway import get_provider
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import (
    number_get,
    number_list,
    provisioning_job_numbers,
)
from smsproxy.numbers.services.provisioning import provisioning_job_create, provisioning_job_run
from smsproxy.numbers.services.rental import (
    number_release,
    number_rent_one,
    number_reserve,
    number_unreserve,
    numbers_configure,
)
from smsproxy.numbers.services.sync import numbers_sync
from smsproxy.proxy.models import Message
from smsproxy.proxy.services.conversations import conversations_expire
from smsproxy.sandbox.models import SandboxNumber
from tests.factories import (
    ConversationFactory,
    MessageFactory,
    ParticipantFactory,
    VirtualNumberFactory,
)

from .conftest import WEBHOOK_URL

pytestmark = pytest.mark.django_db


def test_job_rents_three_gb_numbers() -> None:
    steps: list[str] = []
    job = provisioning_job_create(country="GB", quantity=3)

    job = provisioning_job_run(job=job, on_step=lambda entry: steps.append(entry["message"]))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    numbers = list(provisioning_job_numbers(job=job))
    assert len(numbers) == 3
    for number in numbers:
        sandbox = SandboxNumber.objects.get(msisdn=number.msisdn)
        assert sandbox.is_rented
        assert sandbox.inbound_url == WEBHOOK_URL
        assert number.inbound_webhook_url == WEBHOOK_URL
        assert number.msisdn.startswith("+447700900")
    assert sum("Bought" in step for step in steps) == 3
    assert sum("Configured" in step for step in steps) == 3
    assert steps == [entry["message"] for entry in job.log][1:]  # all but the request line


def test_job_for_an_unoffered_type_fails() -> None:
    job = provisioning_job_run(
        job=provisioning_job_create(country="GB", quantity=1, number_type="landline")
    )

    assert job.status == ProvisioningJob.Status.FAILED
    assert "no more numbers available" in job.error


def test_job_with_pattern() -> None:
    job = provisioning_job_run(job=provisioning_job_create(country="US", quantity=1, pattern="777"))

    assert job.status == ProvisioningJob.Status.SUCCEEDED
    assert "777" in provisioning_job_numbers(job=job).get().msisdn


def test_number_bought_elsewhere_meanwhile_is_skipped() -> None:
    # The sandbox "account" rents +447700900000 already, but the pool does not know it: the
    # search still excludes it, so the job rents the next one.
    get_provider().buy_number(country="GB", msisdn="+447700900000")
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=1))

    assert provisioning_job_numbers(job=job).get().msisdn == "+447700900001"


def test_rent_one_and_release() -> None:
    number = number_rent_one(country="GB")

    assert number.inbound_webhook_url == WEBHOOK_URL
    number_release(number=number)
    assert not SandboxNumber.objects.get(msisdn=number.msisdn).is_rented
    assert number.status == VirtualNumber.Status.RELEASED


def _queued_from(msisdn: str) -> tuple[Message, Message, Message]:
    """A queued SMS from `msisdn`, one already sent from it, and one queued from another number."""
    queued = MessageFactory.create(sender=msisdn)
    sent = MessageFactory.create(sender=msisdn, status=Message.Status.SENT)
    other = MessageFactory.create(sender="+447700900999")
    return queued, sent, other


def _assert_only_first_failed(queued: Message, sent: Message, other: Message) -> None:
    queued.refresh_from_db()
    assert queued.status == Message.Status.FAILED
    assert queued.error_code == "sender_released"
    assert "released" in queued.error_text
    sent.refresh_from_db()
    other.refresh_from_db()
    assert (sent.status, other.status) == (Message.Status.SENT, Message.Status.QUEUED)


@pytest.mark.parametrize("force", [False, True])
def test_release_fails_the_sms_queued_from_the_number(force: bool) -> None:
    number = number_rent_one(country="GB")
    if force:
        ParticipantFactory.create(proxy_number=number)
    messages = _queued_from(number.msisdn)

    number_release(number=number, force=force)

    _assert_only_first_failed(*messages)


def test_sync_retirement_fails_the_sms_queued_from_the_number() -> None:
    number = number_rent_one(country="GB")
    SandboxNumber.objects.filter(msisdn=number.msisdn).update(cancelled_at=timezone.now())
    messages = _queued_from(number.msisdn)

    assert [retired.msisdn for retired in numbers_sync().retired] == [number.msisdn]

    _assert_only_first_failed(*messages)


def test_rent_one_in_a_country_without_numbers() -> None:
    with pytest.raises(ApplicationError) as error:
        number_rent_one(country="FR")
    assert error.value.code == "pool_exhausted"


def test_sync_imports_and_retires() -> None:
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=2))
    first, second = provisioning_job_numbers(job=job)
    SandboxNumber.objects.filter(msisdn=first.msisdn).update(cancelled_at=timezone.now())
    get_provider().buy_number(country="US", msisdn="+15550100042")

    result = numbers_sync()

    assert [number.msisdn for number in result.added] == ["+15550100042"]
    assert [number.msisdn for number in result.retired] == [first.msisdn]
    assert [number.msisdn for number in result.unchanged] == [second.msisdn]
    assert VirtualNumber.objects.get(msisdn="+15550100042").configured_at is None


def test_configure_all_reports_each_number() -> None:
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=1))
    rented = provisioning_job_numbers(job=job).get()
    stranger = VirtualNumberFactory.create(
        msisdn="+447700900500"
    )  # not rented by the sandbox account
    VirtualNumberFactory.create(status=VirtualNumber.Status.RELEASED, released_at=timezone.now())

    outcomes = {outcome.number.msisdn: outcome.error for outcome in numbers_configure()}

    assert outcomes.keys() == {rented.msisdn, stranger.msisdn}
    assert outcomes[rented.msisdn] == ""
    assert "does not rent" in outcomes[stranger.msisdn]


def test_reserve_and_unreserve() -> None:
    number = VirtualNumberFactory.create()

    assert number_reserve(number=number).reserved is True
    assert number_unreserve(number=number).reserved is False
    released = VirtualNumberFactory.create(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )
    with pytest.raises(ApplicationError) as error:
        number_reserve(number=released)
    assert error.value.code == "number_released"


def test_live_participant_counts_are_the_stored_load() -> None:
    # The pool reads the load the proxy keeps on each number: closed conversations do not
    # count; an expired one counts until the sweep (every 30 s) closes it.
    busy, idle = VirtualNumberFactory.create(), VirtualNumberFactory.create()
    ParticipantFactory.create_batch(2, proxy_number=busy)
    closed = ConversationFactory.create(
        status="closed", closed_at=timezone.now(), close_reason="api"
    )
    ParticipantFactory.create(proxy_number=idle, conversation=closed, active=False)
    expired = ConversationFactory.create(expires_at=timezone.now() - timedelta(minutes=1))
    ParticipantFactory.create(proxy_number=idle, conversation=expired)

    def counts() -> dict[str, int]:
        return {number.msisdn: number.assigned_participants for number in number_list()}

    assert counts() == {busy.msisdn: 2, idle.msisdn: 1}
    assert conversations_expire() == 1
    assert counts() == {busy.msisdn: 2, idle.msisdn: 0}


@pytest.mark.parametrize("raw", ["+447700900123", "447700900123", " +44 7700 900123 "])
def test_number_get_accepts_numbers_with_or_without_plus(raw: str) -> None:
    number = VirtualNumberFactory.create(msisdn="+447700900123")
    assert number_get(msisdn=raw) == number


@pytest.mark.parametrize(
    ("raw", "code"), [("hello", "invalid_number"), ("+447700900999", "number_not_found")]
)
def test_number_get_errors(raw: str, code: str) -> None:
    with pytest.raises(ApplicationError) as error:
        number_get(msisdn=raw)
    assert error.value.code == code


def test_an_unexpected_error_is_recorded_on_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_provider() -> None:
        raise RuntimeError("provider misconfigured")

    monkeypatch.setattr("smsproxy.gateway.get_provider", broken_provider)
    job = provisioning_job_create(country="GB", quantity=1)

    with pytest.raises(RuntimeError):
        provisioning_job_run(job=job)

    job.refresh_from_db()
    assert job.status == ProvisioningJob.Status.FAILED
    assert "provider misconfigured" in job.error
    assert job.finished_at is not None


def test_rent_one_asks_for_calls_too_when_masked_calls_are_on(settings) -> None:
    settings.PROXY_VOICE = True

    number = number_rent_one(country="GB")

    assert number.provisioning_job is not None
    assert number.provisioning_job.features == "SMS,VOICE"
    assert "VOICE" in number.features.split(",")
