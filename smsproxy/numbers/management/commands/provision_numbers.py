"""`manage.py provision_numbers`: rent numbers from the provider as a provisioning job."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE, NUMBER_TYPES, ProviderError
from smsproxy.numbers.models import ProvisioningJob
from smsproxy.numbers.selectors import provisioning_job_numbers
from smsproxy.numbers.services.offer import numbers_available_search
from smsproxy.numbers.services.provisioning_start import (
    provisioning_job_start,
    provisioning_job_submit,
)


class Command(BaseCommand):
    help = (
        "Search, buy and configure proxy numbers as a provisioning job: each number's inbound "
        "SMS webhook is pointed at PUBLIC_BASE_URL. Exits non-zero when fewer numbers than "
        '--count could be rented and configured; the job\'s "Run again" button in the admin '
        "then configures what it bought and rents only what is missing (running this command "
        "again starts a new job for the full --count)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--country", required=True, help="ISO 3166-1 alpha-2 country code, e.g. GB."
        )
        parser.add_argument(
            "--count", type=int, default=1, help="How many numbers to rent (default 1)."
        )
        parser.add_argument(
            "--type",
            dest="number_type",
            choices=NUMBER_TYPES,
            default=DEFAULT_NUMBER_TYPE,
            help=f"Number type (default {DEFAULT_NUMBER_TYPE}).",
        )
        parser.add_argument(
            "--features",
            default="SMS",
            help="Comma list of required features: SMS, VOICE, MMS (default SMS).",
        )
        parser.add_argument(
            "--pattern", default="", help="Digits the numbers should contain, e.g. 7700."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Search and list the numbers that would be rented, without renting any.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["count"]
        if count < 1:
            raise CommandError("--count must be at least 1.")
        request = {
            "country": options["country"],
            "number_type": options["number_type"],
            "features": options["features"],
            "pattern": options["pattern"],
        }
        if options["dry_run"]:
            self.dry_run(count=count, **request)
            return
        try:
            job = provisioning_job_submit(quantity=count, **request)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"Provisioning job #{job.pk}: {count} x {job.country} {job.number_type}.")
        try:
            job = provisioning_job_start(job=job, foreground=True, on_step=self.print_step).job
        except ApplicationError as exc:
            # A worker claimed the new job first (run_outbox picks up pending jobs).
            raise CommandError(f"{exc.detail} Follow it on the job's admin page.") from exc
        if job.status != ProvisioningJob.Status.SUCCEEDED:
            raise CommandError(
                f"Job #{job.pk} {job.get_status_display().lower()}: {job.error}. "
                '"Run again" on the job\'s admin page retries it, renting only what is missing.'
            )
        rented = provisioning_job_numbers(job=job).count()
        self.stdout.write(self.style.SUCCESS(f"Rented and configured {rented} number(s)."))

    def print_step(self, entry: dict[str, Any]) -> None:
        style = self.style.ERROR if entry["level"] == "error" else self.style.HTTP_INFO
        self.stdout.write(style(f"  {entry['message']}"))

    def dry_run(self, *, count: int, **request: Any) -> None:
        try:
            offers = numbers_available_search(count=count, **request)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        except ProviderError as exc:
            raise CommandError(f"Search failed: {exc}") from exc
        for offer in offers:
            cost = f"  {offer.monthly_cost}/month" if offer.monthly_cost is not None else ""
            self.stdout.write(
                f"  would rent {offer.msisdn}  {offer.country} {offer.type} "
                f"{','.join(offer.features)}{cost}"
            )
        if len(offers) < count:
            raise CommandError(
                f"Dry run: only {len(offers)} of {count} number(s) available for this request."
            )
        self.stdout.write(
            self.style.SUCCESS(f"Dry run: would rent {len(offers)} number(s); nothing was rented.")
        )
