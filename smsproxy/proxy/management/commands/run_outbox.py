"""`manage.py run_outbox [--once] [--interval SECONDS]`: the embedded delivery worker."""

from __future__ import annotations

import io
import logging
import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    router,
)
from django.utils import timezone

from smsproxy.common.heartbeat import HEARTBEAT_EVERY, OUTBOX_WORKER, heartbeat_record
from smsproxy.common.privacy import mask_number, text_mask_numbers
from smsproxy.numbers.services.provisioning import provisioning_jobs_run_pending
from smsproxy.proxy.events.deliver import events_deliver_due
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.deliver import DeliveryResult, Outcome, message_deliver
from smsproxy.proxy.outbox.queue import outbox_due
from smsproxy.proxy.outbox.ratelimit import rate_limiter_get
from smsproxy.proxy.outbox.send_pool import SendPool
from smsproxy.proxy.services.sweep import outbox_sweep

logger = logging.getLogger(__name__)

# Stuck rows, timed-out concatenated SMS and expired conversations are looked for this often.
SWEEP_EVERY = timedelta(seconds=30)
# Provisioning jobs staff start in the admin are looked for this often (when the loop turns that
# fast): one query per pass would be one more statement per message sent under a steady stream.
PROVISIONING_EVERY = timedelta(seconds=1)
BATCH_SIZE = 100
# Messages in flight at once (`--concurrency`): a send mostly waits for Vonage's answer, and at
# SMS_RATE_LIMIT=30 with Vonage 100 ms away three sends are in flight on average.
CONCURRENCY = 4
# While the database (or anything else) keeps failing, the worker waits this long before trying
# again, doubling up to BACKOFF_MAX: a restart of the database is waited out without a log line
# and a burst of reconnections every second.
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0


class _LogLines(io.StringIO):
    """A stream that logs each line written to it (LOG_FORMAT=json)."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self._log = log

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._log.info("%s", line)
        return len(text)


def _wait(stop: threading.Event, seconds: float) -> bool:
    """Wait `seconds` or until stopped (a function of its own so that tests need not wait)."""
    return stop.wait(seconds)


class Command(BaseCommand):
    help = (
        "Deliver queued outbound SMS (the embedded worker used when CELERY_BROKER_URL is unset). "
        "Polls for due messages and sends each through the configured provider, respecting "
        "SMS_RATE_LIMIT. Every 30 seconds it also settles rows a dead worker left in 'sending' "
        "(re-sent once, see the README), forwards concatenated SMS whose parts timed out and "
        "closes expired conversations. Without a broker it also runs the provisioning jobs "
        "staff start in the admin (Buy numbers). With PROXY_EVENTS_URL set it delivers the "
        "marketplace's events in a thread of its own, so they never delay an SMS. Stops cleanly "
        "on SIGTERM or Ctrl-C, after the messages being sent. Sends up to --concurrency messages "
        "at once, one per sending number at a time (--once sends one at a time)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Sweep, send everything due now, and exit (for cron, tests and debugging).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Seconds to wait between polls when nothing is due (default 1).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=CONCURRENCY,
            help=f"Messages sent at once, each on a thread and database connection of its own "
            f"(default {CONCURRENCY}); at most one per sending number. A send mostly waits for "
            "Vonage: raise it when Vonage is far away or SMS_RATE_LIMIT is high. On SQLite, "
            "and with --once, one at a time.",
        )

    def handle(
        self, *args: Any, once: bool, interval: float, concurrency: int, **options: Any
    ) -> None:
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        if settings.LOG_FORMAT == "json":
            # Every line a JSON object: what the worker prints goes through logging, and its
            # stderr lines, which repeat log lines already written, are dropped.
            self.stdout = OutputWrapper(_LogLines(logger))
            self.stderr = OutputWrapper(io.StringIO())
        self._stop = threading.Event()
        self._ready_in: float | None = None
        if once or connections[router.db_for_write(Message)].vendor == "sqlite":
            # SQLite takes one writer at a time (its in-memory test database refuses a second
            # outright): nothing to gain from sends in parallel.
            concurrency = 1
        self._senders = SendPool(
            size=concurrency,
            deliver=lambda message_id: message_deliver(message_id=message_id),
            report=self._report,
            sender_ready=lambda sender: rate_limiter_get().sender_wait(sender) <= 0,
        )
        previous = self._install_signal_handlers() if not once else {}
        try:
            if once:
                heartbeat_record(name=OUTBOX_WORKER)
                self._sweep()
                provisioning_jobs_run_pending()
                while self._deliver_due():
                    pass
                while events_deliver_due().more:
                    pass
                return
            self.stdout.write(
                f"Outbox worker started (polling every {interval:g}s, "
                f"{concurrency} message(s) at once)."
            )
            events = None
            if settings.PROXY_EVENTS_URL:
                # Marketplace events in a thread of their own: a slow or failing endpoint
                # never delays an SMS.
                events = threading.Thread(
                    target=self._events_loop, args=(interval,), name="events", daemon=True
                )
                events.start()
            try:
                self._loop(interval)
            finally:
                # The sends in flight are finished and recorded, whatever stopped the loop.
                self._senders.close()
            if events is not None:
                events.join()
            self.stdout.write("Outbox worker stopped.")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self, interval: float) -> None:
        last_sweep = None
        last_heartbeat = None
        last_provisioning = None
        backoff = 0.0  # > 0 while iterations fail
        database_down = False
        while not self._stop.is_set():
            close_old_connections()
            try:
                now = timezone.now()
                # /readyz reads it: this loop turns, and reaches the database.
                if last_heartbeat is None or now - last_heartbeat >= HEARTBEAT_EVERY:
                    heartbeat_record(name=OUTBOX_WORKER, now=now)
                    last_heartbeat = now
                if last_sweep is None or now - last_sweep >= SWEEP_EVERY:
                    self._sweep()
                    last_sweep = now
                # Without a broker this worker also rents the numbers staff ordered in the
                # admin (one job at a time; SMS wait while it runs, as admin orders are small).
                if last_provisioning is None or now - last_provisioning >= PROVISIONING_EVERY:
                    provisioning_jobs_run_pending()
                    last_provisioning = now
                busy = self._deliver_due()
            except (OperationalError, InterfaceError) as error:
                # The database restarting must not end the worker: one line when it goes, one
                # when it is back, and a growing pause in between.
                if not database_down:
                    database_down = True
                    message = f"database unreachable: {text_mask_numbers(str(error)).strip()}"
                    logger.warning("Outbox worker: %s", message)
                    self.stderr.write(f"Outbox worker: {message}")
                backoff = min(BACKOFF_MAX, backoff * 2) if backoff else BACKOFF_START
                _wait(self._stop, backoff)
                continue
            except Exception:
                # A bug, not an outage: its traceback each time, but no faster than the backoff.
                logger.exception("Outbox worker iteration failed.")
                backoff = min(BACKOFF_MAX, backoff * 2) if backoff else BACKOFF_START
                self.stderr.write(f"Outbox worker error; retrying in {backoff:g}s")
                _wait(self._stop, backoff)
                continue
            if database_down:
                database_down = False
                logger.warning("Outbox worker: database back")
                self.stderr.write("Outbox worker: database back")
            backoff = 0.0
            if not busy:
                _wait(self._stop, self._idle_for(interval))

    def _events_loop(self, interval: float) -> None:
        """Deliver due events until stopped, on this thread's own database connection."""
        backoff = 0.0
        try:
            while not self._stop.is_set():
                close_old_connections()
                try:
                    result = events_deliver_due()
                except Exception:
                    logger.exception("Events delivery failed.")
                    backoff = min(BACKOFF_MAX, backoff * 2) if backoff else BACKOFF_START
                    _wait(self._stop, backoff)
                    continue
                backoff = 0.0
                if result.delivered or result.failed:
                    self.stdout.write(
                        f"events: {result.delivered} delivered, {result.failed} failed"
                    )
                if not result.more:
                    _wait(self._stop, interval)
        finally:
            connections.close_all()

    def _install_signal_handlers(self) -> dict[int, Any]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(
                f"Received {signal.Signals(signum).name}: stopping after the messages being sent."
            )
            self._stop.set()

        return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}

    def _sweep(self) -> None:
        swept = outbox_sweep()
        for message in swept.recovered:
            self.stdout.write(
                self.style.WARNING(
                    f"#{message.pk} was stuck in sending: now {message.status} "
                    f"({message.error_code or 'receipts arrived'})"
                )
            )
        for result in swept.flushed:
            if result.message is not None:
                self.stdout.write(
                    self.style.WARNING(
                        f"Incomplete concatenated SMS #{result.message.pk} from "
                        f"{mask_number(result.message.sender)} forwarded as it is"
                    )
                )
        if swept.expired:
            self.stdout.write(f"Closed {swept.expired} expired conversation(s)")

    def _deliver_due(self) -> int:
        """Hand out one batch of what is due now; returns how many messages were handled.

        One batch at a time, so that the sweep still runs on schedule under a steady stream.
        Numbers at SMS_RATE_LIMIT_PER_SENDER are left out of the batch rather than claimed and
        put back: their messages wait in the queue, in order, and take no sender meanwhile.
        When the batch has nothing to hand out, this waits for a send in flight to finish; with
        none in flight, the loop waits for the poll interval, or until the first of those
        numbers is ready again if that is sooner (`_idle_for`).
        """
        limiter = rate_limiter_get()
        due = outbox_due(limit=BATCH_SIZE, busy_senders=limiter.sender_waits().keys())
        handed = self._senders.send(due, stop=self._stop)
        if handed or self._stop.is_set():
            return handed
        if self._senders.wait_one():
            return 1
        self._ready_in = min(limiter.sender_waits().values(), default=None)
        return 0

    def _idle_for(self, interval: float) -> float:
        """How long the loop waits when nothing could be handed out."""
        ready_in, self._ready_in = self._ready_in, None
        return interval if ready_in is None else min(interval, ready_in)

    def _report(self, message_id: int, result: DeliveryResult) -> None:
        message = result.message
        # Only masked numbers in the worker's output: it ends up in log files.
        route = (
            f"{mask_number(message.sender)} → {mask_number(message.recipient)}" if message else ""
        )
        detail = text_mask_numbers(result.detail)
        if settings.LOG_FORMAT == "json":
            # One JSON line per send with the log shipper's fields, not a line of text beside.
            if result.outcome != Outcome.SKIPPED:
                logger.log(
                    logging.ERROR if result.outcome == Outcome.FAILED else logging.INFO,
                    "%s #%s %s: %s",
                    result.outcome,
                    message_id,
                    route,
                    detail,
                    extra={
                        "event": "send",
                        "outcome": str(result.outcome),
                        "message_id": message_id,
                    },
                )
            return
        if result.outcome == Outcome.SENT:
            self.stdout.write(self.style.SUCCESS(f"sent #{message_id} {route}: {detail}"))
        elif result.outcome == Outcome.RETRY:
            self.stdout.write(self.style.WARNING(f"retry #{message_id} {route}: {detail}"))
        elif result.outcome == Outcome.FAILED:
            self.stdout.write(self.style.ERROR(f"failed #{message_id} {route}: {detail}"))
        elif result.outcome == Outcome.BLOCKED:
            self.stdout.write(self.style.WARNING(f"blocked #{message_id} {route}: {detail}"))
