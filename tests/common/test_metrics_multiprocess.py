"""Counters under several processes (gunicorn workers, Celery workers, run_outbox): with
PROMETHEUS_MULTIPROC_DIR, a scrape answered by any one process reports the sum of them all."""

from __future__ import annotations

import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from smsproxy.common.metrics import INBOUND_WEBHOOKS, metrics_registry

TOKEN = "metrics-token-for-tests"

# What one worker process does: count `routed` inbound SMS, time the webhooks, count sends.
COUNTING = """
import sys
from smsproxy.common.metrics import INBOUND_WEBHOOKS, SENDS, THROTTLES, WEBHOOK_SECONDS
for _ in range(int(sys.argv[1])):
    INBOUND_WEBHOOKS.labels(outcome="routed").inc()
    WEBHOOK_SECONDS.labels(webhook="inbound-sms", status="200").observe(0.004)
SENDS.labels(outcome="retry", status="1").inc()
THROTTLES.inc()
"""


def count_in_a_process(directory: Path, times: int) -> None:
    subprocess.run(
        [sys.executable, "-c", COUNTING, str(times)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(Path.cwd())},
        check=True,
        timeout=60,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def processes_counted(tmp_path: Path, monkeypatch) -> Path:
    """Three processes that counted 3, 4 and 5 webhooks into one directory, then ended."""
    for times in (3, 4, 5):
        count_in_a_process(tmp_path, times)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


def test_the_registry_adds_up_every_process_of_the_directory(processes_counted: Path) -> None:
    # This process counts too, in its own memory: not part of the directory's sums.
    INBOUND_WEBHOOKS.labels(outcome="routed").inc(100)

    counted = samples(generate_latest(metrics_registry()).decode())

    assert counted[("smsproxy_inbound_sms_total", (("outcome", "routed"),))] == 12
    latency = (("status", "200"), ("webhook", "inbound-sms"))
    assert counted[("smsproxy_webhook_duration_seconds_count", latency)] == 12
    assert counted[("smsproxy_webhook_duration_seconds_bucket", (("le", "0.005"), *latency))] == 12
    assert counted[("smsproxy_sends_total", (("outcome", "retry"), ("status", "1")))] == 3
    assert counted[("smsproxy_throttles_total", ())] == 3


def test_without_the_directory_a_process_reports_its_own_counts(monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    key = ("smsproxy_inbound_sms_total", (("outcome", "duplicate"),))
    before = samples(generate_latest(metrics_registry()).decode()).get(key, 0.0)
    INBOUND_WEBHOOKS.labels(outcome="duplicate").inc()
    assert samples(generate_latest(metrics_registry()).decode())[key] == before + 1


@pytest.mark.django_db
def test_the_metrics_view_reports_every_process_and_the_database(
    processes_counted: Path, client, settings
) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == HTTPStatus.OK
    counted = samples(response.content.decode())
    assert counted[("smsproxy_inbound_sms_total", (("outcome", "routed"),))] == 12
    assert counted[("smsproxy_outbox_queued", ())] == 0  # the database's gauges are there too
