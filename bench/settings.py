"""Settings for the benchmarks: the production settings in a known, local environment.

Like the test settings, a developer's `.env` and shell are ignored, except for `DATABASE_URL`
(`bench/run.py --database-url` sets it). Without it, a throwaway SQLite file in a new temporary
directory is used. The provider is the sandbox with its delivery receipts off (a receipt would
be a second write per message, from a timer thread, in the middle of a measurement), and no
Celery broker: queued messages stay queued instead of being published.
"""

import os
import tempfile
from pathlib import Path

for _name in list(os.environ):
    if _name.startswith(
        ("DJANGO_", "VONAGE_", "PROXY_", "SMS_", "SANDBOX_", "API_", "PUBLIC_BASE_URL")
    ) or _name in {"CELERY_BROKER_URL", "LOG_LEVEL"}:
        del os.environ[_name]

if not os.environ.get("DATABASE_URL"):
    _directory = Path(tempfile.mkdtemp(prefix="smsproxy-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{_directory / 'bench.sqlite3'}"

os.environ.update(
    {
        "DJANGO_READ_DOT_ENV": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "SMS_PROVIDER": "sandbox",
        "SANDBOX_DELIVERY_RECEIPTS": "0",
        "PUBLIC_BASE_URL": "https://proxy.example.com",
        # Per-message INFO lines ("Opened conversation ...") would dominate the output.
        "LOG_LEVEL": "WARNING",
    }
)

# BENCH_EVENTS=1 measures with marketplace events on (one more INSERT per routed SMS); the
# endpoint is never called, as no worker runs during a measurement.
if os.environ.get("BENCH_EVENTS") == "1":
    os.environ.update(
        {
            "PROXY_EVENTS_URL": "http://127.0.0.1:9/events",
            "PROXY_EVENTS_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )

from smsproxy.settings import *  # noqa: E402,F403

# The Django test client's host.
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
