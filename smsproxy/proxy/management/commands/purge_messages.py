"""`manage.py purge_messages --older-than DAYS`: blank old message texts (a dry run by default)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from smsproxy.proxy.services.retention import (
    PURGE_BATCH_SIZE,
    messages_purge_texts,
    messages_purgeable,
)


class Command(BaseCommand):
    help = (
        "Remove the texts of messages older than --older-than DAYS (a retention period for "
        "personal data). Rows, statuses, prices and timestamps stay, so counts and statistics "
        "do not change; messages still queued or sending are kept whole. Shows what it would "
        "purge unless --apply is given. Safe to run from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="Purge texts of messages created more than DAYS days ago (at least 1).",
        )
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Purge for real; without it, only count what would be purged.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=PURGE_BATCH_SIZE,
            help=f"Messages per transaction (default {PURGE_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["older_than"]
        batch_size: int = options["batch_size"]
        if days < 1:
            raise CommandError("--older-than must be at least 1 day.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        cutoff = timezone.now() - timedelta(days=days)
        if not options["apply"]:
            count = messages_purgeable(older_than=cutoff).count()
            self.stdout.write(
                f"{count} message text(s) older than {days} day(s) would be purged "
                f"(before {cutoff:%Y-%m-%d %H:%M} UTC). Run again with --apply to purge them."
            )
            return
        progress = {"purged": 0}

        def on_batch(purged: int) -> None:
            progress["purged"] += purged
            if options["verbosity"] >= 1:
                self.stdout.write(f"  purged {purged} (so far {progress['purged']})")

        total = messages_purge_texts(older_than=cutoff, batch_size=batch_size, on_batch=on_batch)
        self.stdout.write(
            self.style.SUCCESS(f"Purged the texts of {total} message(s) older than {days} day(s).")
        )
