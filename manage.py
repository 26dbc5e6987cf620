#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsproxy.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    asks_for_help = len(sys.argv) < 2 or sys.argv[1] in {"help", "--help", "-h", "version"}
    if not asks_for_help:
        # Django swallows a settings error here and fails later with "Models aren't loaded
        # yet", which names neither the setting nor the fix.
        try:
            settings.INSTALLED_APPS  # noqa: B018 (reading it loads the settings module)
        except ImproperlyConfigured as error:
            sys.exit(
                f"manage.py: {error}\n"
                "For local development, `make run` writes a .env with DJANGO_DEBUG=on (or set "
                "DJANGO_DEBUG=1); .env.example lists every setting."
            )
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
