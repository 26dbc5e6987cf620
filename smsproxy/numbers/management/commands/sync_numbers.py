"""`manage.py sync_numbers`: make the pool match what the provider account rents."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import JobNumberOutcome, ProvisioningJob
from smsproxy.numbers.services.provisioning_start import provisioning_job_start, sync_job_create


class Command(BaseCommand):
    help = (
        "Import the numbers the Vonage account (or the sandbox) already rents, refresh their "
        "features and webhook, and mark numbers the account no longer rents as released. Runs "
        'as a sync job, like the admin\'s "Sync from Vonage", here in the foreground.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--country", default="", help="Only this country, e.g. GB.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            job = sync_job_create(country=options["country"])
            self.stdout.write(f"Sync job #{job.pk}.")
            job = provisioning_job_start(job=job, foreground=True, on_step=self.print_step).job
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        for outcome in job.outcomes.exclude(outcome=JobNumberOutcome.Outcome.FAILED):
            label = outcome.get_outcome_display().removeprefix("Synced: ")
            self.stdout.write(f"  {outcome.msisdn}: {label}")
        if job.status != ProvisioningJob.Status.SUCCEEDED:
            raise CommandError(
                f"Job #{job.pk} {job.get_status_display().lower()}: {job.error}. "
                "Run sync_numbers again for the numbers not synced."
            )
        self.stdout.write(self.style.SUCCESS(f"Job #{job.pk} succeeded."))

    def print_step(self, entry: dict[str, Any]) -> None:
        style = self.style.ERROR if entry["level"] == "error" else self.style.HTTP_INFO
        self.stdout.write(style(f"  {entry['message']}"))
