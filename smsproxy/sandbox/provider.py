"""The sandbox provider: a fictitious Vonage account where nothing leaves the machine.

It behaves like Vonage wherever a caller can tell: it offers numbers from the ranges reserved
for drama (GB +447700900000-999, US +15550100000-999), a number cannot be bought twice, an
update or cancel of a number the account does not rent fails, Number Insight rejects invalid
numbers, and every sent SMS gets message ids (one per part) and, a moment later, a `delivered`
receipt per part sent over HTTP to its receipt webhook (see `receipts`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from phonenumbers import PhoneNumberFormat

from smsproxy.gateway.base import (
    DEFAULT_NUMBER_TYPE,
    NUMBERS_PAGE_SIZE,
    AvailableNumber,
    InvalidNumberError,
    NumberInsight,
    NumberNotOwnedError,
    NumberUnavailableError,
    OwnedNumber,
    PermanentProviderError,
    SendResult,
    SentPart,
    check_client_ref,
)
from smsproxy.gateway.encoding import is_gsm7, split_parts
from smsproxy.gateway.webhooks import delivery_receipt_params, webhook_sign_as_configured

from .models import SandboxMessage, SandboxNumber
from .receipts import receipt_sender

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DramaRange:
    """A block of numbers reserved for fiction: never assigned to a real subscriber."""

    country: str
    first: int  # international digits, no '+'
    last: int
    monthly_cost: Decimal

    def __contains__(self, digits: object) -> bool:
        return (
            isinstance(digits, str) and digits.isdigit() and self.first <= int(digits) <= self.last
        )

    def all_digits(self) -> list[str]:
        return [str(value) for value in range(self.first, self.last + 1)]


DRAMA_RANGES = (
    # Ofcom's drama range for mobiles: 07700 900000-900999.
    DramaRange("GB", 447700900000, 447700900999, Decimal("1.00")),
    # Area code 555 is not assigned to any US region; 555-010-xxxx is used in fiction and demos.
    DramaRange("US", 15550100000, 15550100999, Decimal("0.90")),
)
SANDBOX_NUMBER_TYPE = DEFAULT_NUMBER_TYPE
SANDBOX_FEATURES = ("SMS", "VOICE")
SANDBOX_NETWORK_CODE = "00101"  # MCC 001 / MNC 01: the ITU test network
SANDBOX_PRICE = Decimal("0.0000")
# The application a number is linked to for calls when PROXY_VOICE is on without a
# VONAGE_APPLICATION_ID (the sandbox needs no Vonage application).
SANDBOX_APPLICATION_ID = "sandbox-voice-application"


def drama_range_for(digits: str) -> DramaRange | None:
    return next((block for block in DRAMA_RANGES if digits in block), None)


def _digits(msisdn: str) -> str:
    return msisdn.strip().removeprefix("+")


class SandboxProvider:
    """SmsProvider that records everything in the database and logs each sent SMS."""

    name = "sandbox"

    def __init__(self, *, voice_application_id: str = "") -> None:
        # Recorded on each number configured, as Vonage's `app_id` links it (PROXY_VOICE).
        self.voice_application_id = voice_application_id

    # --- numbers ------------------------------------------------------------------------------

    def search_numbers(
        self,
        *,
        country: str,
        type: str = DEFAULT_NUMBER_TYPE,
        features: tuple[str, ...] = ("SMS",),
        pattern: str = "",
        size: int = 10,
        index: int = 1,
    ) -> list[AvailableNumber]:
        country = country.upper()
        size = max(1, min(size, NUMBERS_PAGE_SIZE))
        skip = (max(1, index) - 1) * size
        wanted = {feature.strip().upper() for feature in features if feature.strip()}
        if type != SANDBOX_NUMBER_TYPE or not wanted <= set(SANDBOX_FEATURES):
            return []
        rented = set(
            SandboxNumber.objects.filter(cancelled_at__isnull=True).values_list("msisdn", flat=True)
        )
        offers: list[AvailableNumber] = []
        for block in DRAMA_RANGES:
            if block.country != country:
                continue
            for digits in block.all_digits():
                if len(offers) >= skip + size:
                    return offers[skip:]
                # Vonage's search_pattern=1: the number *contains* the pattern.
                if pattern and pattern not in digits:
                    continue
                if f"+{digits}" in rented:
                    continue
                offers.append(
                    AvailableNumber(
                        msisdn=f"+{digits}",
                        country=block.country,
                        type=SANDBOX_NUMBER_TYPE,
                        features=SANDBOX_FEATURES,
                        monthly_cost=block.monthly_cost,
                    )
                )
        return offers[skip:]

    def buy_number(self, *, country: str, msisdn: str) -> None:
        digits = _digits(msisdn)
        block = drama_range_for(digits)
        if block is None or block.country != country.upper():
            raise NumberUnavailableError(
                f"method failed: {msisdn} is not offered in {country.upper()}",
                "420",
                http_status=420,
            )
        now = timezone.now()
        try:
            with transaction.atomic():
                number = SandboxNumber.objects.select_for_update().filter(msisdn=f"+{digits}")
                existing = number.first()
                if existing is not None and existing.is_rented:
                    raise NumberUnavailableError(
                        f"method failed: {existing.msisdn} is already rented",
                        "420",
                        http_status=420,
                    )
                if existing is not None:
                    existing.rented_at, existing.cancelled_at, existing.inbound_url = now, None, ""
                    existing.save()
                else:
                    SandboxNumber.objects.create(
                        msisdn=f"+{digits}",
                        country=block.country,
                        type=SANDBOX_NUMBER_TYPE,
                        features=",".join(SANDBOX_FEATURES),
                        rented_at=now,
                    )
        except IntegrityError as exc:  # bought by a concurrent request a moment ago
            raise NumberUnavailableError(
                f"method failed: +{digits} is already rented", "420", http_status=420
            ) from exc
        logger.info("[sandbox] bought %s (%s)", f"+{digits}", block.country)

    def configure_number(self, *, country: str, msisdn: str, inbound_url: str) -> None:
        with transaction.atomic():
            number = self._rented(country=country, msisdn=msisdn, operation="update")
            number.inbound_url = inbound_url
            fields = ["inbound_url", "updated_at"]
            if self.voice_application_id:
                number.application_id = self.voice_application_id
                fields.append("application_id")
            number.save(update_fields=fields)
        logger.info("[sandbox] %s now sends inbound SMS to %s", number.msisdn, inbound_url or "-")
        if self.voice_application_id:
            logger.info("[sandbox] %s now sends calls to %s", number.msisdn, number.application_id)

    def cancel_number(self, *, country: str, msisdn: str) -> None:
        with transaction.atomic():
            number = self._rented(country=country, msisdn=msisdn, operation="cancel")
            number.cancelled_at = timezone.now()
            number.inbound_url = ""
            number.application_id = ""
            number.save(
                update_fields=["cancelled_at", "inbound_url", "application_id", "updated_at"]
            )
        logger.info("[sandbox] cancelled %s", number.msisdn)

    @staticmethod
    def _rented(*, country: str, msisdn: str, operation: str) -> SandboxNumber:
        number = (
            SandboxNumber.objects.select_for_update()
            .filter(msisdn=f"+{_digits(msisdn)}", country=country.upper(), cancelled_at=None)
            .first()
        )
        if number is None:
            raise NumberNotOwnedError(
                f"method failed: cannot {operation} {msisdn}, the account does not rent it",
                "420",
                http_status=420,
            )
        return number

    def list_owned_numbers(self, *, country: str = "") -> list[OwnedNumber]:
        numbers = SandboxNumber.objects.filter(cancelled_at__isnull=True)
        if country:
            numbers = numbers.filter(country=country.upper())
        return [
            OwnedNumber(
                msisdn=number.msisdn,
                country=number.country,
                type=number.type,
                features=tuple(filter(None, number.features.split(","))),
                inbound_url=number.inbound_url,
            )
            for number in numbers
        ]

    # --- Number Insight -----------------------------------------------------------------------

    def insight_basic(self, *, number: str, country: str = "") -> NumberInsight:
        answer = _insight_basic(number.strip(), country.upper())
        if isinstance(answer, str):
            raise InvalidNumberError(answer, "3")
        return answer

    # --- SMS ----------------------------------------------------------------------------------

    def send_sms(
        self,
        *,
        sender: str,
        recipient: str,
        text: str,
        client_ref: str,
        callback_url: str,
    ) -> SendResult:
        to_digits = _digits(recipient)
        if not text:
            raise PermanentProviderError("Missing text param", "2")
        if not (to_digits.isdigit() and 7 <= len(to_digits) <= 15):
            raise PermanentProviderError(f"Invalid to param: {recipient!r}", "3")
        check_client_ref(client_ref)
        parts = tuple(
            SentPart(
                message_id=f"SANDBOX-{secrets.token_hex(8).upper()}",
                price=SANDBOX_PRICE,
                network=SANDBOX_NETWORK_CODE,
            )
            for _ in split_parts(text)
        )
        message = SandboxMessage.objects.create(
            sender=sender,
            recipient=recipient,
            text=text,
            encoding="text" if is_gsm7(text) else "unicode",
            client_ref=client_ref,
            callback_url=callback_url,
            message_ids=[part.message_id for part in parts],
        )
        line = f"[sandbox SMS] {sender} → {recipient}: {text}"
        if len(parts) > 1:
            line += f"  ({len(parts)} parts)"
        # Logged only (at INFO, which the console shows by default): following a conversation
        # in the terminal is the point, and printing it too showed every line twice.
        logger.info("%s", line)
        if callback_url and settings.SANDBOX_DELIVERY_RECEIPTS:
            self._schedule_receipts(message)
        return SendResult(parts=parts)

    @staticmethod
    def _schedule_receipts(message: SandboxMessage) -> None:
        def submit() -> None:
            receipts = [receipt_params(message, message_id) for message_id in message.message_ids]
            receipt_sender.submit(message.callback_url, receipts)

        # The caller's transaction stores the message ids: the receipts leave after it commits
        # (and, as Vonage's, a moment later still: see receipts.RECEIPT_DELAY_SECONDS).
        transaction.on_commit(submit)


def receipt_params(message: SandboxMessage, message_id: str) -> dict[str, str]:
    """A `delivered` receipt for one part, as Vonage sends it (signed when configured)."""
    return webhook_sign_as_configured(
        delivery_receipt_params(
            message_id=message_id,
            sender=message.sender,
            recipient=message.recipient,
            client_ref=message.client_ref,
            price=SANDBOX_PRICE,
            network=SANDBOX_NETWORK_CODE,
        )
    )


@lru_cache(maxsize=4096)
def _insight_basic(raw: str, country: str) -> NumberInsight | str:
    """Number Insight basic, as Vonage answers it: the insight, or why the number is invalid.

    Cached (a pure function of its arguments): the same people's numbers are looked up on
    every conversation they open, and `phonenumbers`' validation costs more CPU than the rest
    of the sandbox's answer.
    """
    try:
        if raw.startswith("+") or not country:
            # Like Vonage: without a country the number is in international format.
            parsed = phonenumbers.parse(raw if raw.startswith("+") else f"+{raw}", None)
        else:
            parsed = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException as exc:
        return f"Invalid number {raw!r}: {exc}"
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    block = drama_range_for(e164.removeprefix("+"))
    if block is not None:
        region = block.country
    else:
        # `is_valid_number` is this region lookup then `is_valid_number_for_region`: the
        # lookup (the costly part, a type match per region of the calling code) done once.
        region = phonenumbers.region_code_for_number(parsed) or ""
        if not region or not phonenumbers.is_valid_number_for_region(parsed, region):
            return f"Invalid number {raw!r}: not a valid phone number"
    if country and raw.startswith("+") and country != region:
        return f"Invalid number {raw!r}: it is not a number of {country}"
    return NumberInsight(e164=e164, country=region)
