"""Making the pool match what the account rents at the provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus

from django.db import IntegrityError, transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE, ProviderError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.common import country_code_clean
from smsproxy.numbers.services.rental import (
    _conversations_close_for_number,
    _queued_messages_fail_for_number,
)


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
