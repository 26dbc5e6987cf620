"""Prometheus counters and histograms, bumped where the thing happens (any layer may import this).

They belong to no registry of their own: the `/metrics` view puts them beside the gauges it
reads from the database at scrape time (`metrics_registry`).

Several processes count: gunicorn's web workers (webhooks), the Celery workers or `run_outbox`
(sends, throttles). With `PROMETHEUS_MULTIPROC_DIR` set (before `prometheus_client` is first
imported: settings.py exports it), prometheus-client's multiprocess mode keeps every process's
values in memory-mapped files in that directory, and a scrape answered by any web worker adds
up the files of every process that shares it: the counts are the host's, not the worker's that
happened to answer. Without it (tests, a single-process run) each process counts for itself.
Files of processes that ended stay and keep counting in the sums, so a counter never goes
backwards while its directory lives (README, operator section).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

INBOUND_WEBHOOKS = Counter(
    "smsproxy_inbound_sms_total",
    "Inbound SMS webhooks handled, by what happened to them "
    "(routed, unrouted, duplicate, part_stored, rejected).",
    ["outcome"],
    registry=None,
)
WEBHOOK_SECONDS = Histogram(
    "smsproxy_webhook_duration_seconds",
    "Time to answer one of Vonage's SMS webhooks, by webhook and HTTP status.",
    ["webhook", "status"],
    # Vonage gives up after about 15 s; a healthy webhook answers in a few milliseconds.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
    registry=None,
)
SENDS = Counter(
    "smsproxy_sends_total",
    "Outbound send attempts by the dispatcher, by outcome (sent, retry, failed, skipped, "
    "blocked) and Vonage's status ('0' accepted, Vonage's status or HTTP code otherwise, "
    "'none' when Vonage was not asked or did not answer).",
    ["outcome", "status"],
    registry=None,
)
THROTTLES = Counter(
    "smsproxy_throttles_total",
    "Sends Vonage throttled (status 1 or HTTP 429): retried about a second later.",
    registry=None,
)

COUNTERS: tuple[Collector, ...] = (INBOUND_WEBHOOKS, WEBHOOK_SECONDS, SENDS, THROTTLES)

# A send's status label when no answer of Vonage's gave one.
NO_STATUS = "none"


def multiprocess_directory() -> str:
    """The directory of prometheus-client's multiprocess mode, or "" when it is off."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry for one scrape: every process's counters (or this process's), and `collectors`."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_directory()
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        for counter in COUNTERS:
            registry.register(counter)
    for collector in collectors:
        registry.register(collector)
    return registry
