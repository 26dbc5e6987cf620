"""Worker SIGKILL mid-send (issue 10): `run_outbox` is killed while Vonage holds its request, and
the documented recovery (`outbox_recover_stale`, deliver.py's docstring) settles the row.

The policy: re-queued once with code `interrupted` and sent on the next attempt; interrupted a
second time, it fails with `interrupted` and is not sent again. Real processes on the PostgreSQL
test database, Vonage faked by a local HTTPS server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox.stale import INTERRUPTED, outbox_recover_stale, stale_sending_after
from tests.faults.fake_vonage import FakeVonage, fake_vonage
from tests.faults.processes import (
    Child,
    child_database_url,
    child_env,
    children,
    manage,
    wait_until,
)
from tests.proxy.outbox.helpers import queued

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


class Worker:
    """Starts `manage.py run_outbox` against the fake Vonage."""

    def __init__(self, start: Callable[..., Child], vonage: FakeVonage, database_url: str) -> None:
        self.start = start
        self.vonage = vonage
        self.env = child_env(
            DATABASE_URL=database_url,
            SMS_PROVIDER="vonage",
            VONAGE_API_KEY="abcd1234",
            VONAGE_API_SECRET="api-secret-for-tests",
            VONAGE_REST_HOST=vonage.host,
            VONAGE_TIMEOUT="120",  # the held send outlives the worker
            REQUESTS_CA_BUNDLE=str(vonage.ca_file),
        )

    def killed_mid_send(self, message: Message) -> None:
        """Run the worker until Vonage holds its send of `message`, then SIGKILL it."""
        sends_before = len(self.vonage.sends)
        worker = self.start("run_outbox", manage("run_outbox", "--interval", "0.2"), self.env)
        wait_until(
            lambda: len(self.vonage.sends) > sends_before or not worker.alive(),
            seconds=60,
            what="the worker's send to reach Vonage",
        )
        assert worker.alive(), worker.output()
        message.refresh_from_db()
        assert message.status == Message.Status.SENDING
        worker.kill()
        message.refresh_from_db()
        assert message.status == Message.Status.SENDING  # nobody recorded anything

    def once(self) -> str:
        worker = self.start("run_outbox-once", manage("run_outbox", "--once"), self.env)
        worker.process.wait(60)
        assert worker.process.returncode == 0, worker.output()
        return worker.output()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    database_url = child_database_url()
    with fake_vonage(tmp_path) as vonage, children(tmp_path) as start:
        yield Worker(start, vonage, database_url)


def stale_timeout_passes(message: Message) -> None:
    """OUTBOX_STALE_SENDING_AFTER goes by for the claim of the dead worker."""
    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - stale_sending_after() - timedelta(seconds=1)
    )


def test_a_send_killed_mid_flight_is_requeued_once_and_sent_on_the_next_attempt(
    worker: Worker,
) -> None:
    message = queued()
    worker.killed_mid_send(message)

    assert outbox_recover_stale() == []  # a claim younger than the timeout is a live worker
    stale_timeout_passes(message)
    [recovered] = outbox_recover_stale()

    assert recovered.pk == message.pk
    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == ("queued", INTERRUPTED, 1)

    worker.vonage.answering = True
    worker.once()

    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == ("sent", "", 2)
    assert [send["client-ref"] for send in worker.vonage.sends] == [str(message.pk)] * 2
    assert list(MessagePart.objects.filter(message=message).values_list("vonage_message_id")) == [
        ("0C00000000FAKE002",)
    ]


def test_a_message_interrupted_twice_fails_as_interrupted_and_is_not_sent_again(
    worker: Worker,
) -> None:
    message = queued()
    worker.killed_mid_send(message)
    stale_timeout_passes(message)
    outbox_recover_stale()
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("queued", INTERRUPTED)

    worker.killed_mid_send(message)
    stale_timeout_passes(message)
    outbox_recover_stale()

    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == ("failed", INTERRUPTED, 2)
    worker.vonage.answering = True
    worker.once()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert [send["client-ref"] for send in worker.vonage.sends] == [str(message.pk)] * 2
