"""What the number pool's services share: input checks, provider errors, small row updates."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import phonenumbers
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import NUMBER_FEATURES, NUMBER_TYPES, AvailableNumber, ProviderError
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob, VirtualNumber

# A release commits the number released, then cancels the rental at the provider (two calls at
# most, each bounded by VONAGE_TIMEOUT). A listing taken within this window after the release
# may predate the cancellation: a sync then leaves the number released instead of bringing it
# back, or a number Vonage no longer rents would be active in the pool.
RELEASE_CANCEL_WINDOW = timedelta(minutes=5)


def country_code_clean(country: str) -> str:
    code = (country or "").strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ApplicationError(
            f"{country!r} is not an ISO 3166-1 alpha-2 country code (e.g. GB, US).",
            code="invalid_country",
            fields={"country": ["Unknown country code."]},
        )
    return code


def number_type_clean(number_type: str) -> str:
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


def pattern_clean(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if pattern and (not pattern.isdigit() or len(pattern) > 20):
        raise ApplicationError(
            "The pattern must be up to 20 digits the number should contain.",
            code="invalid_pattern",
            fields={"pattern": ["Digits only."]},
        )
    return pattern


def pool_active_msisdns(offers: list[AvailableNumber]) -> set[str]:
    """The offered numbers the pool already rents (the provider may still list them)."""
    return set(
        VirtualNumber.objects.filter(
            msisdn__in=[offer.msisdn for offer in offers], status=VirtualNumber.Status.ACTIVE
        ).values_list("msisdn", flat=True)
    )


def provider_failure(action: str, number: str, exc: ProviderError) -> ApplicationError:
    return ApplicationError(
        f"Could not {action} {number}: {exc}",
        code="provider_error",
        status=HTTPStatus.BAD_GATEWAY,
    )


def number_mark_configured(*, number: VirtualNumber, url: str) -> None:
    number.inbound_webhook_url = url
    number.configured_at = timezone.now()
    with transaction.atomic():
        number.save(update_fields=["inbound_webhook_url", "configured_at"])


def number_require_active(number: VirtualNumber) -> None:
    if number.status != VirtualNumber.Status.ACTIVE:
        raise ApplicationError(
            f"{number.msisdn} was released on {number.released_at:%Y-%m-%d}.",
            code="number_released",
            status=HTTPStatus.CONFLICT,
        )


def job_outcome_record(
    *, job: ProvisioningJob, msisdn: str, outcome: str, reason: str = ""
) -> JobNumberOutcome:
    """What a job did to one number, for its page (call it inside the step's transaction)."""
    return JobNumberOutcome.objects.create(job=job, msisdn=msisdn, outcome=outcome, reason=reason)


def provider_description() -> str:
    """Where numbers come from, as staff read it: the sandbox never passes for Vonage."""
    if settings.SMS_PROVIDER == "sandbox":
        return "the sandbox provider (SMS_PROVIDER=sandbox: fictitious numbers, no Vonage account)"
    return "the Vonage account"
