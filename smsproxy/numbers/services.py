"""Changes to the number pool: renting (provisioning jobs), configuring, syncing, releasing.

Every call to the provider is made outside a database transaction: a Vonage round trip can take
seconds, and on SQLite an open write transaction blocks every other writer for that long. Each
database change is then its own short `transaction.atomic`, written right after the provider
call it records, so a crash between two steps never loses a rented number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from http import HTTPStatus
from typing import Any

import phonenumbers
from django.db import IntegrityError, transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import (
    DEFAULT_NUMBER_TYPE,
    NUMBER_FEATURES,
    NUMBER_TYPES,
    AvailableNumber,
    NumberNotOwnedError,
    NumberUnavailableError,
    ProviderError,
    SmsProvider,
)
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import (
    inbound_webhook_url,
    number_is_configured,
    provisioning_job_is_stale,
    provisioning_job_numbers,
)

logger = logging.getLogger(__name__)

# Called with each job log entry as it is written (commands print them as progress).
StepCallback = Callable[[dict[str, Any]], None]

MAX_SEARCH_SIZE = 100  # Vonage's largest page
# Searches in a row that rent nothing before a run gives up. A search that rents something
# always runs again: what was bought is no longer offered, so the next page shows new numbers.
MAX_FRUITLESS_SEARCHES = 3


# --- Input checks -----------------------------------------------------------------------------


def _country_clean(country: str) -> str:
    code = (country or "").strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ApplicationError(
            f"{country!r} is not an ISO 3166-1 alpha-2 country code (e.g. GB, US).",
            code="invalid_country",
            fields={"country": ["Unknown country code."]},
        )
    return code


def _number_type_clean(number_type: str) -> str:
    if number_type not in NUMBER_TYPES:
        raise ApplicationError(
            f"Number type must be one of {', '.join(NUMBER_TYPES)}, not {number_type!r}.",
            code="invalid_number_type",
            fields={"number_type": ["Unknown number type."]},
        )
    return number_type


def features_clean(features: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'sms, voice' or ["SMS"] → ("SMS", "VOICE"): known names, sorted, no duplicates."""
    names = features.split(",") if isinstance(features, str) else list(features)
    cleaned = sorted({name.strip().upper() for name in names if name.strip()})
    unknown = [name for name in cleaned if name not in NUMBER_FEATURES]
    if not cleaned or unknown:
        raise ApplicationError(
            f"Features must be a comma list of {', '.join(NUMBER_FEATURES)}"
            + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
            code="invalid_features",
            fields={"features": ["Unknown or missing features."]},
        )
    return tuple(cleaned)


def _pattern_clean(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if pattern and (not pattern.isdigit() or len(pattern) > 20):
        raise ApplicationError(
            "The pattern must be up to 20 digits the number should contain.",
            code="invalid_pattern",
            fields={"pattern": ["Digits only."]},
        )
    return pattern


def _pool_active_msisdns(offers: list[AvailableNumber]) -> set[str]:
    """The offered numbers the pool already rents (the provider may still list them)."""
    return set(
        VirtualNumber.objects.filter(
            msisdn__in=[offer.msisdn for offer in offers], status=VirtualNumber.Status.ACTIVE
        ).values_list("msisdn", flat=True)
    )


def _provider_failure(action: str, number: str, exc: ProviderError) -> ApplicationError:
    return ApplicationError(
        f"Could not {action} {number}: {exc}",
        code="provider_error",
        status=HTTPStatus.BAD_GATEWAY,
    )


# --- Provisioning jobs ------------------------------------------------------------------------


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
        country=_country_clean(country),
        number_type=_number_type_clean(number_type),
        features=",".join(features_clean(features)),
        pattern=_pattern_clean(pattern),
        quantity=quantity,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
    )
    job.log_entry(
        f"Requested {quantity} x {job.country} {job.number_type} ({job.features})"
        + (f" matching {job.pattern}" if job.pattern else "")
        + (f" by {requested_by}" if job.requested_by else "")
        + "."
    )
    with transaction.atomic():
        job.save()
    return job


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
            self.log(f"Configuring {number.msisdn} failed: {exc}", level="error")
            self.failure = f"configuring {number.msisdn} failed: {exc}"
            return False
        _number_mark_configured(number=number, url=self.webhook_url)
        self.log(f"Configured {number.msisdn}: inbound SMS go to {self.webhook_url}.")
        return True

    def buy(self, candidate: AvailableNumber) -> VirtualNumber | None:
        try:
            self.provider.buy_number(country=candidate.country, msisdn=candidate.msisdn)
        except NumberUnavailableError as exc:
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
        skipped = tried | _pool_active_msisdns(offered)
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
    *, job: ProvisioningJob, on_step: StepCallback | None = None
) -> ProvisioningJob:
    """Rent what the job still lacks, logging each step; ends succeeded, partial or failed.

    A job that ended partial or failed can be run again: numbers it bought but could not
    configure are configured first, and only the remaining quantity is bought.
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
        job.status = ProvisioningJob.Status.RUNNING
        job.started_at = timezone.now()
        job.finished_at = None
        job.error = ""
        job.save(update_fields=["status", "started_at", "finished_at", "error"])

    step = _JobRun(job, on_step)
    step.log("Run started.")
    try:
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
    return number


def _number_mark_configured(*, number: VirtualNumber, url: str) -> None:
    number.inbound_webhook_url = url
    number.configured_at = timezone.now()
    with transaction.atomic():
        number.save(update_fields=["inbound_webhook_url", "configured_at"])


def numbers_available_search(
    *,
    country: str,
    count: int,
    number_type: str = DEFAULT_NUMBER_TYPE,
    features: str | tuple[str, ...] | list[str] = ("SMS",),
    pattern: str = "",
) -> list[AvailableNumber]:
    """What a provisioning job would rent, without renting anything (the `--dry-run`).

    Pages through the provider's search (at most 100 numbers a page) until `count` numbers
    are found or the offer ends.
    """
    if count < 1:
        raise ApplicationError("The count must be at least 1.", code="invalid_quantity")
    country = _country_clean(country)
    number_type = _number_type_clean(number_type)
    wanted_features = features_clean(features)
    pattern = _pattern_clean(pattern)
    provider = gateway.get_provider()
    size = min(MAX_SEARCH_SIZE, count + 10)
    offers: list[AvailableNumber] = []
    seen: set[str] = set()
    index = 1
    while len(offers) < count:
        page = provider.search_numbers(
            country=country,
            type=number_type,
            features=wanted_features,
            pattern=pattern,
            size=size,
            index=index,
        )
        skipped = seen | _pool_active_msisdns(page)
        offers.extend(offer for offer in page if offer.msisdn not in skipped)
        seen.update(offer.msisdn for offer in page)
        if len(page) < size:  # the last page
            break
        index += 1
    return offers[:count]


def number_rent_one(*, country: str, requested_by: Any = None) -> VirtualNumber:
    """Rent and configure one SMS number on the fly (PROXY_AUTO_PROVISION).

    Call it outside a transaction: it talks to the provider and commits each step.
    """
    job = provisioning_job_create(country=country, quantity=1, requested_by=requested_by)
    job = provisioning_job_run(job=job)
    number = provisioning_job_numbers(job=job).first()
    if job.status != ProvisioningJob.Status.SUCCEEDED or number is None:
        raise ApplicationError(
            f"No proxy number is free and renting one in {job.country} failed: {job.error}",
            code="pool_exhausted",
            status=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    return number


# --- Configure, reserve, release --------------------------------------------------------------


def _number_require_active(number: VirtualNumber) -> None:
    if number.status != VirtualNumber.Status.ACTIVE:
        raise ApplicationError(
            f"{number.msisdn} was released on {number.released_at:%Y-%m-%d}.",
            code="number_released",
            status=HTTPStatus.CONFLICT,
        )


def number_configure(*, number: VirtualNumber) -> VirtualNumber:
    """Point the number's inbound SMS webhook at this deployment."""
    _number_require_active(number)
    url = inbound_webhook_url()
    try:
        gateway.get_provider().configure_number(
            country=number.country, msisdn=number.msisdn, inbound_url=url
        )
    except ProviderError as exc:
        raise _provider_failure("configure", number.msisdn, exc) from exc
    _number_mark_configured(number=number, url=url)
    return number


@dataclass
class ConfigureOutcome:
    number: VirtualNumber
    error: str = ""


def numbers_configure(
    *,
    numbers: Iterable[VirtualNumber] | None = None,
    on_number: Callable[[ConfigureOutcome], None] | None = None,
) -> list[ConfigureOutcome]:
    """Configure the numbers (by default every rented one); one failure does not stop the others."""
    if numbers is None:
        numbers = VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE).order_by(
            "msisdn"
        )
    outcomes = []
    for number in numbers:
        outcome = ConfigureOutcome(number=number)
        try:
            number_configure(number=number)
        except ApplicationError as exc:
            outcome.error = exc.detail
        outcomes.append(outcome)
        if on_number is not None:
            on_number(outcome)
    return outcomes


def number_reserve(*, number: VirtualNumber) -> VirtualNumber:
    """Keep the number out of automatic assignment (conversations already on it go on)."""
    return _number_set_reserved(number=number, reserved=True)


def number_unreserve(*, number: VirtualNumber) -> VirtualNumber:
    return _number_set_reserved(number=number, reserved=False)


def _number_set_reserved(*, number: VirtualNumber, reserved: bool) -> VirtualNumber:
    with transaction.atomic():
        current = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        _number_require_active(current)
        if current.reserved != reserved:
            current.reserved = reserved
            current.save(update_fields=["reserved"])
    number.refresh_from_db()
    return number


def number_release(*, number: VirtualNumber, force: bool = False) -> VirtualNumber:
    """Cancel the rental. Refused while the number serves a live conversation, unless forced,
    in which case those conversations are closed (reason "staff") first. SMS still queued to
    go out from the number fail (error code "sender_released")."""
    from smsproxy.proxy.selectors import participant_live_list

    _number_require_active(number)
    live = 0 if force else participant_live_list().filter(proxy_number=number).count()
    if live:
        raise ApplicationError(
            f"{number.msisdn} serves {live} participant(s) of live conversations; "
            "close them first or force the release.",
            code="number_in_use",
            status=HTTPStatus.CONFLICT,
        )
    provider = gateway.get_provider()
    try:
        provider.cancel_number(country=number.country, msisdn=number.msisdn)
    except NumberNotOwnedError as exc:
        # Vonage answers HTTP 420 both for "not yours" and for a refused cancellation: only a
        # number the account no longer lists is recorded as released.
        try:
            still_owned = any(
                owned.msisdn == number.msisdn
                for owned in provider.list_owned_numbers(country=number.country)
            )
        except ProviderError as list_exc:
            raise _provider_failure("release", number.msisdn, list_exc) from list_exc
        if still_owned:
            raise _provider_failure("release", number.msisdn, exc) from exc
        logger.info("%s was no longer rented at the provider; marking it released.", number)
    except ProviderError as exc:
        raise _provider_failure("release", number.msisdn, exc) from exc
    with transaction.atomic():
        # The row is locked before the live conversations are read, so that an assignment
        # that locks the number waits for the release and then sees it released. Conversations
        # assigned between the check above and the cancellation lose their number too, so
        # they are closed whatever `force` said: a cancelled number cannot carry them.
        current = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        _conversations_close_for_number(number=number)
        current.status = VirtualNumber.Status.RELEASED
        current.released_at = timezone.now()
        current.save(update_fields=["status", "released_at"])
        _queued_messages_fail_for_number(number=current)
    number.refresh_from_db()
    return number


def _conversations_close_for_number(*, number: VirtualNumber) -> int:
    """Close (reason "staff") every live conversation that uses the number."""
    # Imported here: the proxy app builds on the numbers app, not the other way round.
    from smsproxy.proxy.models import Conversation
    from smsproxy.proxy.selectors import participant_live_list
    from smsproxy.proxy.services.conversations import conversation_close

    conversation_ids = participant_live_list().filter(proxy_number=number).values("conversation_id")
    conversations = list(Conversation.objects.filter(pk__in=conversation_ids))
    for conversation in conversations:
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.STAFF)
    return len(conversations)


def _queued_messages_fail_for_number(*, number: VirtualNumber) -> int:
    """Fail the queued outbound SMS whose sender is `number`; returns how many.

    Call it in the transaction that marks the number released: a number the account no longer
    rents must not send them (and may be someone else's by the time they would go out).
    """
    from smsproxy.proxy.models import Message

    return Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.QUEUED,
        sender=number.msisdn,
    ).update(
        status=Message.Status.FAILED,
        error_code="sender_released",
        error_text=f"Not sent: the proxy number {number.msisdn} was released before it went out.",
        next_attempt_at=None,
        updated_at=timezone.now(),
    )


# --- Sync -------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    added: list[VirtualNumber] = field(default_factory=list)
    updated: list[VirtualNumber] = field(default_factory=list)
    unchanged: list[VirtualNumber] = field(default_factory=list)
    retired: list[VirtualNumber] = field(default_factory=list)
    # Live conversations closed because a retired number carried them.
    closed_conversations: int = 0

    @property
    def summary(self) -> str:
        closed = (
            f", {self.closed_conversations} live conversation(s) on them closed"
            if self.closed_conversations
            else ""
        )
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.retired)} no longer rented{closed}"
        )


def numbers_sync(*, country: str = "") -> SyncResult:
    """Make the pool match what the account rents at the provider.

    Numbers rented elsewhere (the dashboard, another tool) are imported; features and webhook
    state are refreshed; numbers the pool holds as rented but the provider no longer lists are
    marked released, the live conversations they carried are closed (reason "staff") and the SMS
    queued from them fail ("sender_released"): a number the account no longer rents can neither
    receive nor send their SMS.

    A row rented, configured or released after the listing was requested (a provisioning job
    or a release running meanwhile) is newer than what the listing says about it, and is left
    as it is: otherwise a number bought during the sync would be marked released at once.
    """
    country = _country_clean(country) if country else ""
    listed_at = timezone.now()
    try:
        owned = gateway.get_provider().list_owned_numbers(country=country)
    except ProviderError as exc:
        raise ApplicationError(
            f"Could not list the account's numbers: {exc}",
            code="provider_error",
            status=HTTPStatus.BAD_GATEWAY,
        ) from exc

    result = SyncResult()
    now = timezone.now()
    with transaction.atomic():
        existing = {
            number.msisdn: number
            for number in VirtualNumber.objects.select_for_update().filter(
                msisdn__in=[item.msisdn for item in owned]
            )
        }
        for item in owned:
            features = ",".join(sorted(item.features))
            number = existing.get(item.msisdn)
            if number is None:
                try:
                    with transaction.atomic():
                        number = VirtualNumber.objects.create(
                            msisdn=item.msisdn,
                            country=item.country,
                            number_type=item.type or DEFAULT_NUMBER_TYPE,
                            features=features,
                            inbound_webhook_url=item.inbound_url,
                            configured_at=now if item.inbound_url else None,
                            rented_at=now,
                            last_synced_at=now,
                        )
                except IntegrityError:
                    # A provisioning job (or another sync) recorded it a moment ago: that row
                    # is newer than the listing.
                    result.unchanged.append(VirtualNumber.objects.get(msisdn=item.msisdn))
                    continue
                result.added.append(number)
                continue
            if _number_changed_since(number, listed_at):
                result.unchanged.append(number)
                continue
            changes = _sync_changes(number, item.country, item.type, features, item.inbound_url)
            if changes:
                if number.inbound_webhook_url != item.inbound_url:
                    number.configured_at = now if item.inbound_url else None
                    changes.append("configured_at")
                for name, value in (
                    ("country", item.country),
                    ("number_type", item.type or number.number_type),
                    ("features", features),
                    ("inbound_webhook_url", item.inbound_url),
                    ("status", VirtualNumber.Status.ACTIVE),
                ):
                    setattr(number, name, value)
                if "status" in changes:
                    number.released_at = None
                    number.rented_at = now
                    changes += ["released_at", "rented_at"]
                result.updated.append(number)
            else:
                result.unchanged.append(number)
            number.last_synced_at = now
            number.save(update_fields=[*set(changes), "last_synced_at"])

        gone = (
            VirtualNumber.objects.select_for_update()
            .filter(status=VirtualNumber.Status.ACTIVE, rented_at__lt=listed_at)
            .exclude(msisdn__in=[item.msisdn for item in owned])
        )
        if country:
            gone = gone.filter(country=country)
        for number in gone:
            if _number_changed_since(number, listed_at):
                continue
            number.status = VirtualNumber.Status.RELEASED
            number.released_at = now
            number.last_synced_at = now
            number.save(update_fields=["status", "released_at", "last_synced_at"])
            result.closed_conversations += _conversations_close_for_number(number=number)
            _queued_messages_fail_for_number(number=number)
            result.retired.append(number)
    return result


def _number_changed_since(number: VirtualNumber, moment: datetime) -> bool:
    """The row was rented, configured or released at or after `moment`."""
    return any(
        at is not None and at >= moment
        for at in (number.rented_at, number.configured_at, number.released_at)
    )


def _sync_changes(
    number: VirtualNumber, country: str, number_type: str, features: str, url: str
) -> list[str]:
    changes = []
    if number.country != country:
        changes.append("country")
    if number_type and number.number_type != number_type:
        changes.append("number_type")
    if number.features != features:
        changes.append("features")
    if number.inbound_webhook_url != url:
        changes.append("inbound_webhook_url")
    if number.status != VirtualNumber.Status.ACTIVE:
        changes.append("status")
    return changes
