"""Reads of the number pool: lookups by msisdn, usage counts, the webhook every number needs."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from http import HTTPStatus

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import ProvisioningJob, VirtualNumber

INBOUND_WEBHOOK_PATH = "/webhooks/vonage/inbound-sms/"
# A job "running" for longer than this lost its worker (killed, redeployed): it may run again.
JOB_STALE_AFTER = timedelta(minutes=15)

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def inbound_webhook_url() -> str:
    """The URL every rented number's inbound SMS webhook (`moHttpUrl`) must point at."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + INBOUND_WEBHOOK_PATH


def msisdn_normalize(raw: str) -> str:
    """A number as staff type it ("447700900123", "+44 7700 900123") → E.164 with '+'."""
    digits = re.sub(r"[\s\-().]", "", raw.strip())
    candidate = digits if digits.startswith("+") else f"+{digits}"
    if not _E164.match(candidate):
        raise ApplicationError(
            f"{raw!r} is not a phone number in international format (e.g. +447700900123).",
            code="invalid_number",
        )
    return candidate


def number_get(*, msisdn: str) -> VirtualNumber:
    """The pool's row for a number given with or without '+'."""
    normalized = msisdn_normalize(msisdn)
    try:
        return VirtualNumber.objects.get(msisdn=normalized)
    except VirtualNumber.DoesNotExist:
        raise ApplicationError(
            f"{normalized} is not a number of the pool.",
            code="number_not_found",
            status=HTTPStatus.NOT_FOUND,
        ) from None


def number_active_participants_subquery() -> Coalesce:
    """Live participants per number, as an expression for `.annotate()` (one subquery, no N+1)."""
    # Imported here: the proxy app depends on the numbers app, not the other way round.
    from smsproxy.proxy.selectors import participant_live_list

    live = (
        participant_live_list()
        .filter(proxy_number=OuterRef("pk"))
        .order_by()
        .values("proxy_number")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return Coalesce(Subquery(live, output_field=IntegerField()), Value(0))


def number_list_with_usage(
    *, queryset: QuerySet[VirtualNumber] | None = None
) -> QuerySet[VirtualNumber]:
    """Numbers annotated with `active_participants`: participants of live conversations."""
    queryset = VirtualNumber.objects.all() if queryset is None else queryset
    return queryset.annotate(active_participants=number_active_participants_subquery())


def number_list(*, status: str = "", country: str = "") -> QuerySet[VirtualNumber]:
    """The pool for the API: optional filters, usage counts, stable order."""
    queryset = VirtualNumber.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    if country:
        queryset = queryset.filter(country=country.upper())
    return number_list_with_usage(queryset=queryset).order_by("msisdn")


def number_live_participant_counts(*, numbers: list[VirtualNumber]) -> dict[int, int]:
    """`{number id: live participants}` for the given numbers, in one query."""
    from smsproxy.proxy.selectors import participant_live_list

    counts = (
        participant_live_list()
        .filter(proxy_number__in=numbers)
        .order_by()
        .values("proxy_number")
        .annotate(total=Count("pk"))
    )
    result = {number.pk: 0 for number in numbers}
    result.update({row["proxy_number"]: row["total"] for row in counts})
    return result


def number_is_configured(*, number: VirtualNumber) -> bool:
    """The number's inbound webhook points at this deployment."""
    return number.configured_at is not None and number.inbound_webhook_url == inbound_webhook_url()


def provisioning_job_is_stale(*, job: ProvisioningJob, now: datetime | None = None) -> bool:
    """A job "running" for longer than JOB_STALE_AFTER lost its worker (killed, redeployed)."""
    now = now or timezone.now()
    return (
        job.status == ProvisioningJob.Status.RUNNING
        and job.started_at is not None
        and job.started_at < now - JOB_STALE_AFTER
    )


def provisioning_job_is_runnable(*, job: ProvisioningJob, now: datetime | None = None) -> bool:
    """The job may be run (again): pending, partial or failed, or a running job gone stale."""
    if job.status in (
        ProvisioningJob.Status.PENDING,
        ProvisioningJob.Status.PARTIAL,
        ProvisioningJob.Status.FAILED,
    ):
        return True
    return provisioning_job_is_stale(job=job, now=now)


def provisioning_job_numbers(*, job: ProvisioningJob) -> QuerySet[VirtualNumber]:
    """Numbers a job rented that are still rented."""
    return VirtualNumber.objects.filter(
        provisioning_job=job, status=VirtualNumber.Status.ACTIVE
    ).order_by("rented_at", "pk")
