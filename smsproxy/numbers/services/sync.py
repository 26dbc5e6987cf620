"""Making the pool match what the account rents at the provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus

from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE, OwnedNumber, ProviderError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.common import RELEASE_CANCEL_WINDOW, country_code_clean
from smsproxy.numbers.signals import RetireReason, numbers_retired_send


@dataclass
class SyncResult:
    added: list[VirtualNumber] = field(default_factory=list)
    updated: list[VirtualNumber] = field(default_factory=list)
    unchanged: list[VirtualNumber] = field(default_factory=list)
    retired: list[VirtualNumber] = field(default_factory=list)
    # Retired numbers that had participants assigned (their conversations are being closed).
    retired_in_use: int = 0
    # "msisdn: why" for each number a database conflict kept from being synced this time.
    failed: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        in_use = (
            f" ({self.retired_in_use} of them in live use: their conversations are closed)"
            if self.retired_in_use
            else ""
        )
        failed = f", {len(self.failed)} not synced (database conflict)" if self.failed else ""
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.retired)} no longer rented{in_use}"
            f"{failed}"
        )


def numbers_sync(*, country: str = "") -> SyncResult:
    """Make the pool match what the account rents at the provider.

    Numbers rented elsewhere (the dashboard, another tool) are imported; features and webhook
    state are refreshed; numbers the pool holds as rented but the provider no longer lists are
    marked released, and `numbers_retired` tells the layers above (the proxy closes their live
    conversations and fails the SMS queued from them).

    Each number is its own short transaction that locks only that number's row: closing a
    conversation locks the conversation and then its numbers, so a sync holding many number
    locks while others close conversations would deadlock with them; and one number that loses
    a conflict (reported in `failed`) does not roll back what the others changed.

    A row rented, configured or released after the listing was requested (a provisioning job
    or a release running meanwhile) is newer than what the listing says about it, and is left
    as it is: otherwise a number bought during the sync would be marked released at once. So is
    a number released within RELEASE_CANCEL_WINDOW before the listing: its release may not have
    cancelled it at the provider yet, and bringing it back would leave a number the account no
    longer rents active in the pool.
    """
    country = country_code_clean(country) if country else ""
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
    for item in owned:
        try:
            _listed_number_sync(item=item, listed_at=listed_at, result=result)
        except OperationalError as exc:
            result.failed.append(f"{item.msisdn}: {exc}")

    gone = (
        VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE, rented_at__lt=listed_at)
        .exclude(msisdn__in=[item.msisdn for item in owned])
        .order_by("pk")
    )
    if country:
        gone = gone.filter(country=country)
    for number_id, msisdn in gone.values_list("pk", "msisdn"):
        try:
            retired = _unlisted_number_retire(number_id=number_id, listed_at=listed_at)
        except OperationalError as exc:
            result.failed.append(f"{msisdn}: {exc}")
            continue
        if retired is not None:
            result.retired.append(retired)
            result.retired_in_use += bool(retired.assigned_participants)
    numbers_retired_send(numbers=result.retired, reason=RetireReason.NOT_RENTED)
    return result


def _listed_number_sync(*, item: OwnedNumber, listed_at: datetime, result: SyncResult) -> None:
    """Import or refresh one number the provider lists."""
    features = ",".join(sorted(item.features))
    now = timezone.now()
    with transaction.atomic():
        number = VirtualNumber.objects.select_for_update().filter(msisdn=item.msisdn).first()
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
                # A provisioning job (or another sync) recorded it a moment ago: that row is
                # newer than the listing.
                result.unchanged.append(VirtualNumber.objects.get(msisdn=item.msisdn))
                return
            result.added.append(number)
            return
        if _number_changed_since(number, listed_at) or _number_maybe_cancelling(number, listed_at):
            result.unchanged.append(number)
            return
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


def _unlisted_number_retire(*, number_id: int, listed_at: datetime) -> VirtualNumber | None:
    """Mark released a number the provider no longer lists, unless it changed since the listing."""
    with transaction.atomic():
        number = (
            VirtualNumber.objects.select_for_update()
            .filter(pk=number_id, status=VirtualNumber.Status.ACTIVE)
            .first()
        )
        if number is None or _number_changed_since(number, listed_at):
            return None
        now = timezone.now()
        number.status = VirtualNumber.Status.RELEASED
        number.released_at = now
        number.last_synced_at = now
        number.save(update_fields=["status", "released_at", "last_synced_at"])
    return number


def _number_maybe_cancelling(number: VirtualNumber, listed_at: datetime) -> bool:
    """Released so shortly before the listing that the provider may not have cancelled it yet."""
    return (
        number.status == VirtualNumber.Status.RELEASED
        and number.released_at is not None
        and number.released_at > listed_at - RELEASE_CANCEL_WINDOW
    )


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
