"""`/metrics` for Prometheus: gauges read from the database on each scrape, and the counters.

The gauges are the database's and the same whichever process answers; the counters and the
webhook latency histogram are kept by the processes that count (`smsproxy.common.metrics`:
all the host's processes in multiprocess mode).

Protected by `METRICS_TOKEN` (`Authorization: Bearer <token>`): unset, the endpoint does not
exist (404), so nothing about the traffic is public by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smsproxy.common.metrics import metrics_registry
from smsproxy.proxy.dashboard import (
    free_numbers_by_country,
    live_conversations_count,
    outbox_figures_get,
    pending_events_count,
)


class DatabaseCollector(Collector):
    """The figures an operator alerts on, counted in four aggregate queries per scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        outbox = outbox_figures_get(now=now)
        yield GaugeMetricFamily(
            "smsproxy_outbox_queued", "Outbound messages waiting to be sent.", value=outbox.queued
        )
        yield GaugeMetricFamily(
            "smsproxy_outbox_oldest_queued_age_seconds",
            "Seconds the oldest queued outbound message has waited (0 when none).",
            value=outbox.oldest_queued_age(now=now) or 0.0,
        )
        free = GaugeMetricFamily(
            "smsproxy_pool_free_numbers",
            "Active, unreserved proxy numbers that assignment may pick, per country.",
            labels=["country"],
        )
        for country, count in free_numbers_by_country().items():
            free.add_metric([country], count)
        yield free
        yield GaugeMetricFamily(
            "smsproxy_live_conversations",
            "Conversations that are active.",
            value=live_conversations_count(),
        )
        yield GaugeMetricFamily(
            "smsproxy_events_pending",
            "Marketplace events not yet delivered.",
            value=pending_events_count(),
        )


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse(
            {"code": "not_found", "detail": "No such endpoint or object."},
            status=HTTPStatus.NOT_FOUND,
        )
    if not _authorized(request, token):
        response = JsonResponse(
            {"code": "not_authenticated", "detail": "A valid bearer token is required."},
            status=HTTPStatus.UNAUTHORIZED,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # A registry per scrape: the database gauges are computed now, and the counters (registered
    # nowhere else) are read as they stand.
    registry = metrics_registry(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
