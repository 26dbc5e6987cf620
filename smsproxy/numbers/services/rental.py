"""A rented number's life: configure, reserve, release; and renting one on the fly."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.db import transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import NumberNotOwnedError, ProviderError
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import inbound_webhook_url, provisioning_job_numbers
from smsproxy.numbers.services.common import (
    number_mark_configured,
    number_require_active,
    provider_failure,
)
from smsproxy.numbers.services.provisioning import provisioning_job_create, provisioning_job_run

logger = logging.getLogger(__name__)


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


def number_configure(*, number: VirtualNumber) -> VirtualNumber:
    """Point the number's inbound SMS webhook at this deployment."""
    number_require_active(number)
    url = inbound_webhook_url()
    try:
        gateway.get_provider().configure_number(
            country=number.country, msisdn=number.msisdn, inbound_url=url
        )
    except ProviderError as exc:
        raise provider_failure("configure", number.msisdn, exc) from exc
    number_mark_configured(number=number, url=url)
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
        number_require_active(current)
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

    number_require_active(number)
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
            raise provider_failure("release", number.msisdn, list_exc) from list_exc
        if still_owned:
            raise provider_failure("release", number.msisdn, exc) from exc
        logger.info("%s was no longer rented at the provider; marking it released.", number)
    except ProviderError as exc:
        raise provider_failure("release", number.msisdn, exc) from exc
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
