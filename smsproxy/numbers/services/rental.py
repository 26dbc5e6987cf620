"""A rented number's life: configure, reserve, release; and renting one on the fly."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from smsproxy import gateway
from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import NumberNotOwnedError, ProviderError
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.numbers.selectors import inbound_webhook_url, provisioning_job_numbers
from smsproxy.numbers.services.common import (
    RELEASE_CANCEL_WINDOW,
    number_mark_configured,
    number_require_active,
    provider_failure,
)
from smsproxy.numbers.services.provisioning import provisioning_job_create, provisioning_job_run
from smsproxy.numbers.signals import RetireReason, numbers_retired_send
from smsproxy.numbers.usage import LiveUse, live_uses_text, number_live_uses

logger = logging.getLogger(__name__)


def number_rent_one(*, country: str, requested_by: Any = None) -> VirtualNumber:
    """Rent and configure one SMS number on the fly (PROXY_AUTO_PROVISION).

    Call it outside a transaction: it talks to the provider and commits each step.
    """
    # With masked calls on, a conversation's number must carry calls as well as texts.
    features = ("SMS", "VOICE") if settings.PROXY_VOICE else ("SMS",)
    job = provisioning_job_create(
        country=country, quantity=1, features=features, requested_by=requested_by
    )
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


def number_reserve(*, number: VirtualNumber, actor: Any = None) -> VirtualNumber:
    """Keep the number out of automatic assignment (conversations already on it go on)."""
    return _number_set_reserved(number=number, reserved=True, actor=actor)


def number_unreserve(*, number: VirtualNumber, actor: Any = None) -> VirtualNumber:
    return _number_set_reserved(number=number, reserved=False, actor=actor)


def _number_set_reserved(*, number: VirtualNumber, reserved: bool, actor: Any) -> VirtualNumber:
    """Set the flag; `actor` (staff) gets an admin history entry old → new when it changed."""
    with transaction.atomic():
        current = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        number_require_active(current)
        if current.reserved != reserved:
            current.reserved = reserved
            current.save(update_fields=["reserved"])
            audit_change(
                actor=actor,
                obj=current,
                change=f"Reserved: {_yes_no(not reserved)} → {_yes_no(reserved)}.",
            )
    number.refresh_from_db()
    return number


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _release_message(current: VirtualNumber, uses: list[LiveUse]) -> str:
    message = "Status: active → released."
    if current.assigned_participants:
        named = live_uses_text(uses)
        message += (
            f" Forced: it served {current.assigned_participants} participant(s) of live "
            "conversations, closed with reason staff" + (f": {named}." if named else ".")
        )
    return message


def number_release(
    *, number: VirtualNumber, force: bool = False, actor: Any = None
) -> VirtualNumber:
    """Retire the number from the pool, then cancel its rental at the provider.

    Refused while participants are assigned to it (its stored load), unless forced. Whatever
    used the number (live conversations, SMS queued from it) is settled by the receivers of
    `numbers_retired`, sent once the retirement has committed.

    The pool is changed first and the provider second: a process that dies in between leaves a
    number released in the pool that Vonage still rents (costly, visible, repaired by
    `sync_numbers`), never a number Vonage no longer rents that the pool would still assign.

    `actor` (staff) gets an admin history entry, written in the transaction that releases it.
    """
    number_require_active(number)
    with transaction.atomic():
        # Only the number row is locked in this transaction. Closing a conversation locks the
        # conversation and then its numbers (their load), so closing them here, under this
        # lock, deadlocked against closes and reassignments running at the same time; they
        # are closed after commit, each in its own transaction. The lock also makes an
        # assignment that locks the row KEY SHARE wait for this and then see it released.
        current = VirtualNumber.objects.select_for_update().get(pk=number.pk)
        number_require_active(current)
        if current.assigned_participants and not force:
            raise ApplicationError(
                f"{current.msisdn} serves {current.assigned_participants} participant(s) of "
                "live conversations; close them first or force the release.",
                code="number_in_use",
                status=HTTPStatus.CONFLICT,
            )
        uses = (
            number_live_uses(numbers=[current])[current.pk] if current.assigned_participants else []
        )
        current.status = VirtualNumber.Status.RELEASED
        current.released_at = timezone.now()
        current.save(update_fields=["status", "released_at"])
        audit_change(actor=actor, obj=current, change=_release_message(current, uses))
    try:
        # The provider first, so that the window in which a sync could list the number as still
        # rented (RELEASE_CANCEL_WINDOW) does not include closing its conversations.
        _rental_cancel(number=current)
    finally:
        numbers_retired_send(numbers=[current], reason=RetireReason.RELEASED)
    number.refresh_from_db()
    return number


def _rental_cancel(*, number: VirtualNumber) -> None:
    """Cancel the rental of a number the pool has released already."""
    provider = gateway.get_provider()
    try:
        provider.cancel_number(country=number.country, msisdn=number.msisdn)
    except NumberNotOwnedError as exc:
        # Vonage answers HTTP 420 both for "not yours" and for a refused cancellation: only a
        # number the account no longer lists counts as cancelled.
        try:
            still_owned = any(
                owned.msisdn == number.msisdn
                for owned in provider.list_owned_numbers(country=number.country)
            )
        except ProviderError as list_exc:
            raise _still_rented_error(number, list_exc) from list_exc
        if still_owned:
            raise _still_rented_error(number, exc) from exc
        logger.info("%s was no longer rented at the provider.", number)
    except ProviderError as exc:
        raise _still_rented_error(number, exc) from exc


def _still_rented_error(number: VirtualNumber, exc: ProviderError) -> ApplicationError:
    return ApplicationError(
        f"{number.msisdn} is released in the pool (no new conversation gets it), but cancelling "
        f"its rental failed: {exc}. Vonage still rents it and bills for it. sync_numbers "
        f"brings it back into the pool once {RELEASE_CANCEL_WINDOW.seconds // 60} minutes have "
        "passed; release it again then.",
        code="provider_error",
        status=HTTPStatus.BAD_GATEWAY,
    )
