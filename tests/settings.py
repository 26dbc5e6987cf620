"""Settings for the test suite: the production settings module, run in a known environment.

A developer's `.env` and shell are ignored except for `DATABASE_URL` (to run the suite on
PostgreSQL). `CELERY_BROKER_URL` is moved aside to `TEST_CELERY_BROKER_URL`: only the real
Celery worker test uses it; every other test runs delivery on the embedded worker.
"""

import os

TEST_CELERY_BROKER_URL = os.environ.pop("CELERY_BROKER_URL", "")
for _name in list(os.environ):
    if _name.startswith(
        (
            *("DJANGO_", "VONAGE_", "PROXY_", "SMS_", "SANDBOX_", "API_", "PUBLIC_BASE_URL"),
            *("PROMETHEUS_", "LOG_", "READYZ_", "METRICS_"),
        )
    ):
        del os.environ[_name]

os.environ.update(
    {
        "DJANGO_READ_DOT_ENV": "0",
        "DJANGO_SECRET_KEY": "test-only-secret-key-not-for-production-use-0123456789",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "SMS_PROVIDER": "sandbox",
        "PUBLIC_BASE_URL": "https://proxy.example.com",
        # The sandbox's receipts are HTTP requests to PUBLIC_BASE_URL, which no test serves:
        # tests that want them switch them on and point PUBLIC_BASE_URL at a live server.
        "SANDBOX_DELIVERY_RECEIPTS": "0",
    }
)

from smsproxy import settings as _production  # noqa: E402
from smsproxy.settings import *  # noqa: E402,F403

# Tests run on the sandbox and some switch to Vonage with override_settings: the sandbox app
# (and its tables) must be there whatever SMS_PROVIDER the suite starts with.
INSTALLED_APPS = [
    *_production.INSTALLED_APPS,
    *(["smsproxy.sandbox"] if "smsproxy.sandbox" not in _production.INSTALLED_APPS else []),
]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "100000/minute"}}  # noqa: F405
