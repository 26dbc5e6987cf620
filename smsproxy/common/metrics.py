"""In-process Prometheus counters, bumped where the thing happens (any layer may import this).

They belong to no registry of their own: the `/metrics` view puts them beside the gauges it
reads from the database at scrape time. Each process counts for itself (Prometheus sums the
processes' series); a restarted process starts again from zero, which `rate()` expects.
"""

from __future__ import annotations

from prometheus_client import Counter

INBOUND_WEBHOOKS = Counter(
    "smsproxy_inbound_sms_total",
    "Inbound SMS webhooks handled, by what happened to them.",
    ["outcome"],
    registry=None,
)
SENDS = Counter(
    "smsproxy_sends_total",
    "Outbound send attempts by the dispatcher, by outcome.",
    ["outcome"],
    registry=None,
)

COUNTERS = (INBOUND_WEBHOOKS, SENDS)
