"""What the provider offers: the dry run's search, and the check made before a job starts."""

from __future__ import annotations

import logging

from django.conf import settings

from smsproxy import gateway
from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import (
    DEFAULT_NUMBER_TYPE,
    AvailableNumber,
    PermanentProviderError,
    ProviderError,
)
from smsproxy.numbers.services.common import (
    country_code_clean,
    features_clean,
    number_type_clean,
    pattern_clean,
    pool_active_msisdns,
    provider_description,
)

logger = logging.getLogger(__name__)

MAX_SEARCH_SIZE = 100  # Vonage's largest page


def offer_check(*, country: str, number_type: str, features: tuple[str, ...]) -> None:
    """Refuse (`country_not_served`) a request for numbers the provider does not offer at all.

    The pattern is left out: a pattern that matches nothing today is the job's to report. A
    provider that cannot be asked right now (a transient error) does not block the request.
    """
    try:
        offered = gateway.get_provider().search_numbers(
            country=country, type=number_type, features=features, pattern="", size=1
        )
    except PermanentProviderError as exc:
        raise _not_served(country, number_type, features, why=str(exc)) from exc
    except ProviderError as exc:
        logger.warning("Could not check the offer in %s before the job: %s", country, exc)
        return
    if not offered:
        raise _not_served(country, number_type, features, why="")


def _not_served(
    country: str, number_type: str, features: tuple[str, ...], *, why: str
) -> ApplicationError:
    source = provider_description()
    detail = (
        f"{source[0].upper()}{source[1:]} offers no {number_type} numbers with "
        f"{'+'.join(features)} in {country}"
        + (f" ({why})" if why else "")
        + ": a job would rent nothing, so none was started."
    )
    if settings.SMS_PROVIDER == "sandbox":
        detail += " The sandbox rents fictitious GB and US numbers only."
    return ApplicationError(
        detail,
        code="country_not_served",
        fields={"country": [f"No {number_type} numbers with {'+'.join(features)} in {country}."]},
    )


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
    country = country_code_clean(country)
    number_type = number_type_clean(number_type)
    wanted_features = features_clean(features)
    pattern = pattern_clean(pattern)
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
        skipped = seen | pool_active_msisdns(page)
        offers.extend(offer for offer in page if offer.msisdn not in skipped)
        seen.update(offer.msisdn for offer in page)
        if len(page) < size:  # the last page
            break
        index += 1
    return offers[:count]
