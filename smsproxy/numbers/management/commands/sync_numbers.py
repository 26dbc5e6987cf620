"""`manage.py sync_numbers`: make the pool match what the provider account rents."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.services.sync import numbers_sync


class Command(BaseCommand):
    help = (
        "Import the numbers the Vonage account already rents, refresh their features and "
        "webhook, and mark numbers the account no longer rents as released."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--country", default="", help="Only this country, e.g. GB.")

    def handle(self, *args: Any, **options: Any) -> None:
        scope = f" in {options['country'].upper()}" if options["country"] else ""
        self.stdout.write(
            f"Listing the numbers the {settings.SMS_PROVIDER} account rents{scope}..."
        )
        try:
            result = numbers_sync(country=options["country"])
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        for label, numbers in (
            ("added", result.added),
            ("updated", result.updated),
            ("unchanged", result.unchanged),
            ("released (no longer rented)", result.retired),
        ):
            for number in numbers:
                self.stdout.write(f"  {number.msisdn} {number.country}: {label}")
        for failure in result.failed:
            self.stdout.write(self.style.ERROR(f"  {failure}"))
        if result.failed:
            raise CommandError(
                f"Synced: {result.summary}. Run sync_numbers again for the numbers not synced."
            )
        self.stdout.write(self.style.SUCCESS(f"Synced: {result.summary}."))
