"""`manage.py release_numbers`: cancel the rental of numbers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.selectors import number_get_many
from smsproxy.numbers.services.rental import number_release


class Command(BaseCommand):
    help = (
        "Cancel the rental of the given numbers (with or without '+'): each is released in the "
        "pool, then cancelled at the provider. Numbers serving a live conversation are refused, "
        "and nothing is released, unless --force is given, which also closes those "
        "conversations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("msisdns", nargs="+", metavar="MSISDN", help="Numbers to release.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Also release numbers in live conversations, closing those conversations.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        force: bool = options["force"]
        try:
            numbers = number_get_many(msisdns=options["msisdns"])
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        released = [
            number.msisdn for number in numbers if number.status == VirtualNumber.Status.RELEASED
        ]
        if released:
            raise CommandError(f"Already released: {', '.join(released)}.")
        in_use = {
            number.msisdn: number.assigned_participants
            for number in numbers
            if number.assigned_participants
        }
        if in_use and not force:
            listed = ", ".join(f"{msisdn} ({count} live)" for msisdn, count in in_use.items())
            raise CommandError(
                f"In live conversations: {listed}. Nothing was released; use --force to close "
                "those conversations and release anyway."
            )
        failures = 0
        for number in numbers:
            try:
                number_release(number=number, force=force)
            except ApplicationError as exc:
                failures += 1
                self.stdout.write(self.style.ERROR(f"  {number.msisdn}: {exc.detail}"))
                continue
            closed = (
                f", closing the conversations of {in_use[number.msisdn]} participant(s)"
                if number.msisdn in in_use
                else ""
            )
            self.stdout.write(f"  {number.msisdn}: released{closed}")
        if failures:
            raise CommandError(
                f"{failures} of {len(numbers)} number(s) failed to release; see above why."
            )
        self.stdout.write(self.style.SUCCESS(f"Released {len(numbers)} number(s)."))
