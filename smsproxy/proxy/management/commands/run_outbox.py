"""`manage.py run_outbox [--once] [--interval SECONDS]`: the embedded delivery worker."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from smsproxy.numbers.services.provisioning import provisioning_jobs_run_pending
from smsproxy.proxy.outbox.deliver import DeliveryResult, Outcome, message_deliver
from smsproxy.proxy.outbox.queue import outbox_due_ids
from smsproxy.proxy.services.sweep import outbox_sweep

logger = logging.getLogger(__name__)

# Stuck rows, timed-out concatenated SMS and expired conversations are looked for this often.
SWEEP_EVERY = timedelta(seconds=30)
BATCH_SIZE = 100


class Command(BaseCommand):
    help = (
        "Deliver queued outbound SMS (the embedded worker used when CELERY_BROKER_URL is unset). "
        "Polls for due messages and sends each through the configured provider, respecting "
        "SMS_RATE_LIMIT. Every 30 seconds it also settles rows a dead worker left in 'sending' "
        "(re-sent once, see the README), forwards concatenated SMS whose parts timed out and "
        "closes expired conversations. Stops cleanly on SIGTERM or Ctrl-C, after the message "
        "being sent."
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

    def handle(self, *args: Any, once: bool, interval: float, **options: Any) -> None:
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        self._stop = threading.Event()
        previous = self._install_signal_handlers() if not once else {}
        try:
            if once:
                self._sweep()
                provisioning_jobs_run_pending()
                while self._deliver_due():
                    pass
                return
            self.stdout.write(f"Outbox worker started (polling every {interval:g}s).")
            last_sweep = None
            while not self._stop.is_set():
                close_old_connections()
                try:
                    now = timezone.now()
                    if last_sweep is None or now - last_sweep >= SWEEP_EVERY:
                        self._sweep()
                        last_sweep = now
                    # Without a broker this worker also rents the numbers staff ordered in the
                    # admin (one job per pass; SMS wait while it runs, as admin orders are small).
                    provisioning_jobs_run_pending()
                    busy = self._deliver_due()
                except Exception as error:
                    # The database restarting must not end the worker: log, wait, go on.
                    logger.exception("Outbox worker iteration failed.")
                    self.stderr.write(f"Outbox worker error: {error}; retrying in {interval:g}s")
                    busy = 0
                if not busy:
                    self._stop.wait(interval)
            self.stdout.write("Outbox worker stopped.")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _install_signal_handlers(self) -> dict[int, Any]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(
                f"Received {signal.Signals(signum).name}: stopping after this message."
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
                        f"{result.message.sender} forwarded as it is"
                    )
                )
        if swept.expired:
            self.stdout.write(f"Closed {swept.expired} expired conversation(s)")

    def _deliver_due(self) -> int:
        """Send one batch of what is due now; returns how many messages were handled.

        One batch at a time, so that the sweep still runs on schedule under a steady stream.
        """
        handled = 0
        for message_id in outbox_due_ids(limit=BATCH_SIZE):
            if self._stop.is_set():
                break
            self._report(message_id, message_deliver(message_id=message_id))
            handled += 1
        return handled

    def _report(self, message_id: int, result: DeliveryResult) -> None:
        message = result.message
        route = f"{message.sender} → {message.recipient}" if message else ""
        if result.outcome == Outcome.SENT:
            self.stdout.write(self.style.SUCCESS(f"sent #{message_id} {route}: {result.detail}"))
        elif result.outcome == Outcome.RETRY:
            self.stdout.write(self.style.WARNING(f"retry #{message_id} {route}: {result.detail}"))
        elif result.outcome == Outcome.FAILED:
            self.stdout.write(self.style.ERROR(f"failed #{message_id} {route}: {result.detail}"))
