"""`manage.py expire_conversations`: close conversations past their expiry (cron-safe)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.proxy.services.assignment import number_loads_recount
from smsproxy.proxy.services.conversations import EXPIRE_BATCH_SIZE, conversations_expire


class Command(BaseCommand):
    help = (
        "Close every conversation whose expiry time has passed (close reason 'expired') and "
        "free its participants' proxy numbers. Expired conversations route nothing even "
        "before this runs; run it from cron (e.g. every minute) to keep the pool tidy. Safe to "
        "run on several hosts at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=EXPIRE_BATCH_SIZE,
            help=f"Conversations closed per transaction (default {EXPIRE_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--recount-loads",
            action="store_true",
            help="Also recompute every proxy number's stored load (participants using it) "
            "from the participants: a repair after changes made outside the services.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        verbosity: int = options["verbosity"]
        progress = {"closed": 0}

        def on_batch(closed: int) -> None:
            progress["closed"] += closed
            if verbosity >= 1:
                self.stdout.write(f"  closed {closed} (so far {progress['closed']})")

        total = conversations_expire(batch_size=batch_size, on_batch=on_batch)
        if total:
            self.stdout.write(self.style.SUCCESS(f"Closed {total} expired conversation(s)."))
        else:
            self.stdout.write("No expired conversations to close.")
        if options["recount_loads"]:
            changed = number_loads_recount()
            self.stdout.write(f"Recounted the numbers' loads: {changed} corrected.")
