"""`manage.py configure_numbers`: point numbers' inbound SMS webhook at PUBLIC_BASE_URL."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.selectors import inbound_webhook_url, number_get_many
from smsproxy.numbers.services.rental import ConfigureOutcome, numbers_configure


class Command(BaseCommand):
    help = (
        "Point the inbound SMS webhook of the given numbers (or, with --all, of every rented "
        "number) at PUBLIC_BASE_URL/webhooks/vonage/inbound-sms/. Numbers may be given with "
        "or without '+'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("msisdns", nargs="*", metavar="MSISDN", help="Numbers to configure.")
        parser.add_argument("--all", action="store_true", help="Configure every rented number.")

    def handle(self, *args: Any, **options: Any) -> None:
        msisdns: list[str] = options["msisdns"]
        if options["all"] == bool(msisdns):
            raise CommandError("Give either --all or one or more numbers (MSISDN ...).")
        self.stdout.write(f"Inbound webhook: {inbound_webhook_url()}")
        numbers = None  # --all: every rented number
        if msisdns:
            try:
                numbers = number_get_many(msisdns=msisdns)
            except ApplicationError as exc:
                raise CommandError(exc.detail) from exc
            released = [
                number.msisdn for number in numbers if number.status != VirtualNumber.Status.ACTIVE
            ]
            if released:
                raise CommandError(f"Released, cannot be configured: {', '.join(released)}.")
        outcomes = numbers_configure(numbers=numbers, on_number=self.print_outcome)
        failed = [outcome for outcome in outcomes if outcome.error]
        if failed:
            raise CommandError(f"{len(failed)} of {len(outcomes)} number(s) were not configured.")
        self.stdout.write(self.style.SUCCESS(f"Configured {len(outcomes)} number(s)."))

    def print_outcome(self, outcome: ConfigureOutcome) -> None:
        if outcome.error:
            self.stdout.write(self.style.ERROR(f"  {outcome.number.msisdn}: {outcome.error}"))
        else:
            self.stdout.write(f"  {outcome.number.msisdn}: configured")
