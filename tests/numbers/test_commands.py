"""The pool's management commands, through call_command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.utils import timezone

from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.services import sync as sync_services
from smsproxy.sandbox.models import SandboxNumber
from tests.factories import VirtualNumberFactory

from .conftest import NOT_AVAILABLE, SERVER_ERROR, WEBHOOK_URL, FakeVonage, rent_sandbox_numbers

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- provision_numbers ------------------------------------------------------------------------


def test_provision_numbers_rents_and_configures() -> None:
    output = run("provision_numbers", "--country", "GB", "--count", "3")

    assert VirtualNumber.objects.filter(inbound_webhook_url=WEBHOOK_URL).count() == 3
    assert output.count("Bought +447700900") == 3
    assert output.count("Configured +447700900") == 3
    assert "Rented and configured 3 number(s)." in output
    assert ProvisioningJob.objects.get().status == ProvisioningJob.Status.SUCCEEDED


def test_provision_numbers_defaults() -> None:
    run("provision_numbers", "--country", "gb")

    job = ProvisioningJob.objects.get()
    assert (job.country, job.quantity, job.number_type, job.features) == (
        "GB",
        1,
        "mobile-lvn",
        "SMS",
    )


def test_provision_numbers_falling_short_exits_non_zero(vonage: FakeVonage) -> None:
    vonage.offer("447700900101", "447700900102", "447700900103", "447700900104")
    vonage.fail("/number/buy", "447700900104", NOT_AVAILABLE)
    out = StringIO()

    with pytest.raises(CommandError, match=r"partially done: Rented and configured 3 of 5") as err:
        call_command("provision_numbers", "--country", "GB", "--count", "5", stdout=out)

    assert "+447700900104 is no longer available" in out.getvalue()
    assert VirtualNumber.objects.count() == 3
    assert str(err.value).endswith("retries it, renting only what is missing.")


def test_provision_numbers_with_nothing_on_offer_fails(vonage: FakeVonage) -> None:
    vonage.offer("33700000001", country="FR")
    # Offered when the request is checked, taken by someone else before the job buys it.
    vonage.fail("/number/buy", "33700000001", NOT_AVAILABLE)
    with pytest.raises(CommandError, match="failed: Rented and configured 0 of 1"):
        run("provision_numbers", "--country", "FR")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--country", "ZZ"], "not an ISO 3166-1 alpha-2 country code"),
        (["--country", "GB", "--count", "0"], "--count must be at least 1"),
        (["--country", "GB", "--features", "SMS,FAX"], "unknown: FAX"),
        (["--country", "GB", "--pattern", "77x"], "up to 20 digits"),
        (["--country", "GB", "--type", "satellite"], "invalid choice"),
        (["--country", "GB", "--dry-run", "--count", "-2"], "--count must be at least 1"),
    ],
)
def test_provision_numbers_rejects_bad_input(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("provision_numbers", *args)
    assert not ProvisioningJob.objects.exists()
    assert not SandboxNumber.objects.exists()


def test_provision_numbers_requires_country() -> None:
    with pytest.raises(CommandError, match="--country"):
        run("provision_numbers")


def test_provision_numbers_dry_run_rents_nothing() -> None:
    output = run("provision_numbers", "--country", "GB", "--count", "2", "--dry-run")

    assert "would rent +447700900000" in output
    assert "would rent +447700900001" in output
    assert "Dry run: would rent 2 number(s); nothing was rented." in output
    assert not VirtualNumber.objects.exists()
    assert not ProvisioningJob.objects.exists()
    assert not SandboxNumber.objects.exists()


def test_provision_numbers_dry_run_beyond_one_search_page() -> None:
    # The sandbox offers 1000 GB numbers; a search shows at most 100 of them at a time.
    output = run("provision_numbers", "--country", "GB", "--count", "150", "--dry-run")

    assert output.count("would rent +4477009") == 150
    assert "would rent +447700900149" in output
    assert "Dry run: would rent 150 number(s); nothing was rented." in output


def test_provision_numbers_dry_run_short_exits_non_zero(vonage: FakeVonage) -> None:
    vonage.offer("447700900101")

    with pytest.raises(CommandError, match="only 1 of 2 number"):
        run("provision_numbers", "--country", "GB", "--count", "2", "--dry-run")
    assert vonage.calls("/number/buy") == []


def test_provision_numbers_dry_run_search_failure(vonage: FakeVonage) -> None:
    vonage.search_failure = SERVER_ERROR

    with pytest.raises(CommandError, match="Search failed"):
        run("provision_numbers", "--country", "GB", "--dry-run")


# --- sync_numbers -----------------------------------------------------------------------------


def test_sync_numbers(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900102")
    vonage.rent("447700900101", url=WEBHOOK_URL)

    output = run("sync_numbers", "--country", "GB")

    assert "Listing the numbers the Vonage account rents in GB.\n" in output
    assert "+447700900101: added" in output
    assert "+447700900102: no longer rented, released" in output
    assert (
        "Synced from the Vonage account: 1 added, 0 updated, 0 unchanged, 1 no longer rented."
        in output
    )


def test_sync_numbers_on_the_sandbox() -> None:
    rent_sandbox_numbers(1)
    VirtualNumber.objects.all().delete()

    output = run("sync_numbers")

    assert "+447700900000: added" in output
    assert "Synced from the sandbox provider" in output
    assert VirtualNumber.objects.get().inbound_webhook_url == WEBHOOK_URL


def test_sync_numbers_reports_numbers_a_conflict_kept_from_syncing(
    vonage: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")

    def conflict(**kwargs: object) -> None:
        raise OperationalError("could not obtain lock")

    monkeypatch.setattr(sync_services, "_unlisted_number_retire", conflict)
    out = StringIO()

    with pytest.raises(CommandError, match=r"1 number\(s\) not synced"):
        call_command("sync_numbers", stdout=out)
    assert "+447700900101: could not obtain lock" in out.getvalue()


def test_sync_numbers_failure(vonage: FakeVonage) -> None:
    vonage.list_failure = SERVER_ERROR
    with pytest.raises(CommandError, match="Could not list the account's numbers"):
        run("sync_numbers")


def test_sync_numbers_bad_country() -> None:
    with pytest.raises(CommandError, match="country code"):
        run("sync_numbers", "--country", "Britain")


# --- configure_numbers ------------------------------------------------------------------------


def test_configure_numbers_by_msisdn_with_or_without_plus(vonage: FakeVonage) -> None:
    first = VirtualNumberFactory.create(
        msisdn="+447700900101", inbound_webhook_url="", configured_at=None
    )
    second = VirtualNumberFactory.create(msisdn="+447700900102", inbound_webhook_url="")
    vonage.rent("447700900101")
    vonage.rent("447700900102")

    output = run("configure_numbers", "447700900101", "+447700900102")

    assert "+447700900101: configured" in output
    assert "Configured 2 number(s)." in output
    for number in (first, second):
        number.refresh_from_db()
        assert number.inbound_webhook_url == WEBHOOK_URL


def test_configure_numbers_given_twice_configures_once(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101", inbound_webhook_url="")
    vonage.rent("447700900101")

    output = run("configure_numbers", "447700900101", "+447700900101")

    assert "Configured 1 number(s)." in output
    assert len(vonage.calls("/number/update")) == 1


def test_configure_numbers_all() -> None:
    numbers = rent_sandbox_numbers(2)
    VirtualNumber.objects.update(inbound_webhook_url="", configured_at=None)

    output = run("configure_numbers", "--all")

    assert "Configured 2 number(s)." in output
    for number in numbers:
        number.refresh_from_db()
        assert number.inbound_webhook_url == WEBHOOK_URL


def test_configure_numbers_failure_exits_non_zero(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")
    VirtualNumberFactory.create(msisdn="+447700900102")
    vonage.rent("447700900101")
    vonage.rent("447700900102")
    vonage.fail("/number/update", "447700900102", SERVER_ERROR)
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 number"):
        call_command("configure_numbers", "--all", stdout=out)
    assert "+447700900101: configured" in out.getvalue()
    assert "+447700900102: Could not configure" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either --all or one or more numbers"),
        (["--all", "+447700900101"], "either --all or one or more numbers"),
        (["+447700900101", "+447700900999"], r"\+447700900999 is not a number of the pool"),
        (["not-a-number"], "international format"),
    ],
)
def test_configure_numbers_bad_input_changes_nothing(
    vonage: FakeVonage, args: list[str], message: str
) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")
    with pytest.raises(CommandError, match=message):
        run("configure_numbers", *args)
    assert vonage.requests == []


def test_configure_numbers_refuses_released_numbers(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(
        msisdn="+447700900101", status="released", released_at=timezone.now()
    )
    with pytest.raises(CommandError, match="Released, cannot be configured"):
        run("configure_numbers", "447700900101")
    assert vonage.requests == []


# --- release_numbers --------------------------------------------------------------------------


def test_release_numbers() -> None:
    first, second = rent_sandbox_numbers(2)

    output = run("release_numbers", first.msisdn.removeprefix("+"), second.msisdn)

    assert f"{first.msisdn}: released" in output
    assert "Released 2 number(s)." in output
    assert not VirtualNumber.objects.filter(status="active").exists()
    assert not SandboxNumber.objects.filter(cancelled_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+447700900999"], "not a number of the pool"),
        (["+447700900300", "+447700900999"], "not a number of the pool"),
    ],
)
def test_release_numbers_bad_input(args: list[str], message: str) -> None:
    VirtualNumberFactory.create(
        msisdn="+447700900300", status="released", released_at=timezone.now()
    )
    with pytest.raises(CommandError, match=message):
        run("release_numbers", *args)


def test_release_numbers_requires_a_number() -> None:
    with pytest.raises(CommandError, match="MSISDN"):
        run("release_numbers")


def test_release_numbers_provider_failure_exits_non_zero(vonage: FakeVonage) -> None:
    VirtualNumberFactory.create(msisdn="+447700900101")
    vonage.rent("447700900101")
    vonage.fail("/number/cancel", "447700900101", SERVER_ERROR)

    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 number"):
        call_command("release_numbers", "+447700900101", stdout=out)
    # Released in the pool first; the output says the provider still rents it.
    assert VirtualNumber.objects.get().status == VirtualNumber.Status.RELEASED
    assert "Vonage still rents it" in out.getvalue()


@pytest.mark.parametrize(
    "command", ["provision_numbers", "sync_numbers", "configure_numbers", "release_numbers"]
)
def test_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command(command, "--help")
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
