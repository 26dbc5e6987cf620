"""Make sure a newcomer running `make run` can log in to the admin, without a fixed password."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "For local development (sandbox provider on SQLite): create the superuser 'admin' with "
        "a random password on first use, keep the password in .run/admin-password (git-ignored, "
        "readable only by you) and print how to log in. Refuses to run against a real Vonage "
        "account or a non-SQLite database."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--password-file",
            default=str(Path(settings.BASE_DIR) / ".run" / "admin-password"),
            help="Where the generated password is kept (default: .run/admin-password).",
        )
        parser.add_argument(
            "--if-local",
            action="store_true",
            help="Outside the local default, say so and exit 0 instead of failing "
            "(`make run` with a Vonage account or PostgreSQL configured).",
        )

    def handle(self, *args: Any, password_file: str, if_local: bool, **options: Any) -> None:
        engine = settings.DATABASES["default"]["ENGINE"]
        if settings.SMS_PROVIDER != "sandbox" or not engine.endswith("sqlite3"):
            message = (
                "local_admin only runs for the local default (sandbox provider, SQLite). "
                "Create staff users with `manage.py createsuperuser`."
            )
            if if_local:
                self.stdout.write(self.style.WARNING(f"No local admin login: {message}"))
                return
            raise CommandError(message)
        users = get_user_model()
        path = Path(password_file)
        user = users.objects.filter(username=USERNAME).first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                users.objects.create_superuser(username=USERNAME, email="", password=password)
                self.stdout.write(self.style.SUCCESS(f"Created the local superuser '{USERNAME}'."))
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Reset the password of the local superuser '{USERNAME}'.")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.write_text(password + "\n")
        else:
            password = path.read_text().strip()
        base = settings.PUBLIC_BASE_URL
        self.stdout.write(
            f"Admin: {base}/admin/  user: {USERNAME}  password: {password}  (kept in {path})"
        )
