"""/metrics under gunicorn with several workers and the embedded worker beside them: every
scrape, whichever worker answers it, reports the counts of all of them (PROMETHEUS_MULTIPROC_DIR).

Real processes: gunicorn as the Procfile runs it (3 workers) and `run_outbox --once`, sharing
one metrics directory, on the PostgreSQL test database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from smsproxy.proxy.models import Message
from tests.faults.processes import child_database_url, child_env, children, gunicorn, manage
from tests.proxy.fixtures import ALICE, ALICE_PROXY, INBOUND_URL, conversation_make

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-fault-test"
WEBHOOKS = 30
SCRAPES = 12


def scrape(session: requests.Session, base_url: str) -> dict[tuple[str, frozenset], float]:
    response = session.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_every_scrape_counts_every_process(tmp_path: Path) -> None:
    database_url = child_database_url()
    conversation_make()
    directory = tmp_path / "prometheus"
    with children(tmp_path) as start:
        env = child_env(
            DATABASE_URL=database_url,
            DJANGO_DEBUG="0",
            DJANGO_SECURE_SSL_REDIRECT="0",
            METRICS_TOKEN=TOKEN,
            PROMETHEUS_MULTIPROC_DIR=str(directory),
        )
        base_url = gunicorn(start, env=env, workers=3)
        for index in range(WEBHOOKS):
            form = {
                "msisdn": ALICE.removeprefix("+"),
                "to": ALICE_PROXY.removeprefix("+"),
                "messageId": f"0C{index:015X}",
                "text": f"Message {index}",
                "type": "text",
            }
            # A new connection each time, so that the workers share the webhooks.
            assert requests.post(base_url + INBOUND_URL, data=form, timeout=30).ok
        sender = start("run_outbox", manage("run_outbox", "--once"), env)
        assert sender.process.wait(120) == 0, sender.output()

        queued = Message.objects.filter(status=Message.Status.QUEUED).count()
        assert queued == 0
        for _ in range(SCRAPES):
            with requests.Session() as fresh:  # any worker may answer
                samples = scrape(fresh, base_url)
            routed = ("smsproxy_inbound_sms_total", frozenset({("outcome", "routed")}))
            timed = (
                "smsproxy_webhook_duration_seconds_count",
                frozenset({("webhook", "inbound-sms"), ("status", "200")}),
            )
            sent = ("smsproxy_sends_total", frozenset({("outcome", "sent"), ("status", "0")}))
            assert samples[routed] == WEBHOOKS
            assert samples[timed] == WEBHOOKS
            assert samples[sent] == WEBHOOKS  # counted by run_outbox, another process
    assert len(list(directory.glob("counter_*.db"))) >= 2  # the workers' files, and the sender's
