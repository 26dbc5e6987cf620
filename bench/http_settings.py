"""Settings of the HTTP benchmark (`bench/http.py`): the benchmark settings, plus a URL conf
that adds a bare view beside the production URLs (the ceiling the webhook is compared with)."""

from bench.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
