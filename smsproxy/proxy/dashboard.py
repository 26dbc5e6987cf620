"""The figures of the admin dashboard and the metrics endpoint: aggregate reads only.

Each function is one query (or two for the pool), so the admin index and a Prometheus scrape
cost the same few statements whatever the size of the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncHour

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Event, Message, Participant

# Statuses that mean an SMS did not reach its recipient (calls' unhappy endings are not failures).
FAILURE_STATUSES = (Message.Status.FAILED, Message.Status.REJECTED, Message.Status.EXPIRED)


@dataclass(frozen=True)
class OutboxFigures:
    queued: int
    oldest_queued_at: datetime | None
    failed_last_hour: int
    unrouted_last_hour: int

    def oldest_queued_age(self, *, now: datetime) -> float | None:
        """Seconds the oldest queued message has waited, or None with nothing queued."""
        if self.oldest_queued_at is None:
            return None
        return max(0.0, (now - self.oldest_queued_at).total_seconds())


@dataclass(frozen=True)
class CountryHeadroom:
    country: str
    free_numbers: int  # active, unreserved
    needed: int  # rule 3's lower bound: the most live conversations one real number is in

    @property
    def headroom(self) -> int:
        return self.free_numbers - self.needed


@dataclass(frozen=True)
class HourBar:
    hour: datetime
    total: int
    counts: dict[str, int]  # status → messages created in that hour


def live_conversations_count() -> int:
    return Conversation.objects.filter(status=Conversation.Status.ACTIVE).count()


def pending_events_count() -> int:
    return Event.objects.filter(status=Event.Status.PENDING).count()


def outbox_figures_get(*, now: datetime) -> OutboxFigures:
    """Queued messages (depth and oldest), and failures and unrouted texts of the last hour."""
    hour_ago = now - timedelta(hours=1)
    queued = Q(status=Message.Status.QUEUED)
    # A failure counts when it happened (the row's last change), an unrouted text when it came.
    failed = Q(status__in=FAILURE_STATUSES, updated_at__gte=hour_ago)
    unrouted = Q(status=Message.Status.UNROUTED, created_at__gte=hour_ago)
    figures = Message.objects.filter(queued | failed | unrouted).aggregate(
        queued=Count("id", filter=queued),
        oldest_queued_at=Min("created_at", filter=queued),
        failed=Count("id", filter=failed),
        unrouted=Count("id", filter=unrouted),
    )
    return OutboxFigures(
        queued=figures["queued"],
        oldest_queued_at=figures["oldest_queued_at"],
        failed_last_hour=figures["failed"],
        unrouted_last_hour=figures["unrouted"],
    )


def free_numbers_by_country() -> dict[str, int]:
    """Active, unreserved numbers per country: the ones assignment may pick."""
    rows = (
        VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE, reserved=False)
        .values("country")
        .annotate(free=Count("id"))
        .order_by("country")
    )
    return {row["country"]: row["free"] for row in rows}


def busiest_person_by_country() -> dict[str, int]:
    """Per participant country, the most live conversations any one real number is in.

    Rule 3 gives such a person a different number in each, so a country's pool can serve
    nobody new once this reaches its free numbers. One GROUP BY over a GROUP BY: the ORM
    cannot group an aggregate of an aggregate, so the outer level is plain SQL around it.
    """
    per_person = (
        Participant.objects.filter(active=True)
        .values("country", "real_number")
        .annotate(live=Count("id"))
        .order_by()
    )
    inner_sql, params = per_person.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT per_person.country, MAX(per_person.live) "  # noqa: S608 (ORM-built SQL)
            f"FROM ({inner_sql}) per_person GROUP BY per_person.country",
            params,
        )
        return {country: busiest for country, busiest in cursor.fetchall()}


def pool_headroom_get() -> list[CountryHeadroom]:
    """Free numbers against rule 3's lower bound, for every country with either."""
    free = free_numbers_by_country()
    needed = busiest_person_by_country()
    return [
        CountryHeadroom(
            country=country, free_numbers=free.get(country, 0), needed=needed.get(country, 0)
        )
        for country in sorted(free.keys() | needed.keys())
    ]


def messages_per_hour(*, now: datetime, hours: int = 24) -> list[HourBar]:
    """Messages created in each of the last `hours` hours (the current one included), by status."""
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    first_hour = current_hour - timedelta(hours=hours - 1)
    rows = (
        Message.objects.filter(created_at__gte=first_hour)
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "status")
        .annotate(count=Count("id"))
        .order_by()
    )
    counts: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["hour"], {})[row["status"]] = row["count"]
    bars = []
    for offset in range(hours):
        hour = first_hour + timedelta(hours=offset)
        by_status = counts.get(hour, {})
        bars.append(HourBar(hour=hour, total=sum(by_status.values()), counts=by_status))
    return bars


def month_spend(*, now: datetime) -> Decimal:
    """What Vonage charged for this calendar month's messages (UTC), from their prices."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = Message.objects.filter(created_at__gte=month_start, price__isnull=False).aggregate(
        total=Sum("price")
    )["total"]
    return total if total is not None else Decimal("0")
