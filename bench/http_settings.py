"""Settings of the HTTP benchmark (`bench/web.py`): the benchmark settings made production-like,
plus a URL conf that adds a bare view beside the production URLs (the ceiling the webhook is
compared with).

On top of `bench.settings` (production settings, sandbox provider, no Celery broker): signed
webhooks (sha256 HMAC, a bench-only secret), INFO logging as in production (the servers' output
goes to log files), the sandbox's delivery receipts on and sent to the bench's own server
(`BENCH_PUBLIC_BASE_URL`), and the API throttle raised so that the creation runs measure the
service, not the throttle. HTTPS redirection stays off as in `bench.settings`: the load comes
over plain HTTP on 127.0.0.1, and the receipts too.
"""

import os

from bench.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

BENCH_SIGNATURE_SECRET = "bench-only-signature-secret-0123456789"
VONAGE_SIGNATURE_SECRET = BENCH_SIGNATURE_SECRET
VONAGE_SIGNATURE_METHOD = "sha256"

LOGGING["root"]["level"] = "INFO"  # noqa: F405

SANDBOX_DELIVERY_RECEIPTS = True
PUBLIC_BASE_URL = os.environ.get("BENCH_PUBLIC_BASE_URL", PUBLIC_BASE_URL)  # noqa: F405

BENCH_API_THROTTLE_RATE = "1000000/minute"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"user": BENCH_API_THROTTLE_RATE},
}
