"""`manage.py release_numbers`: cancel the rental of numbers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.selectors import number_get_many
from smsproxy.numbers.services.release import numbers_release
from smsproxy.numbers.usage import live_uses_text


class Command(BaseCommand):
    help = (
        "Cancel the rental of the given numbers (with or without '+'): each is released in the "
        "pool, then cancelled at the provider. Numbers already released are skipped. When any "
        "number serves a live conversation, nothing is released unless --force is given, which "
        "also closes those conversations (the same rule as the admin's Release action)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("msisdns", nargs="+", metavar="MSISDN", help="Numbers to release.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Also release numbers in live conversations, closing those conversations.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            numbers = number_get_many(msisdns=options["msisdns"])
            outcome = numbers_release(numbers=numbers, force=options["force"])
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        for number in outcome.already_released:
            self.stdout.write(f"  {number.msisdn}: already released, skipped")
        for number in outcome.released:
            closed = outcome.closed.get(number.pk)
            closing = f", closing {live_uses_text(closed)}" if closed else ""
            self.stdout.write(f"  {number.msisdn}: released{closing}")
        for number, why in outcome.failed:
            self.stdout.write(self.style.ERROR(f"  {number.msisdn}: {why}"))
        if outcome.failed:
            raise CommandError(
                f"{len(outcome.failed)} of {len(numbers)} number(s) failed to release; "
                "see above why."
            )
        self.stdout.write(self.style.SUCCESS(f"Released {len(outcome.released)} number(s)."))
