"""smsproxy settings, read from the environment (and `.env` when present).

Every variable is documented in `.env.example` and in the README's configuration table.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from smsproxy.common.address import RUN_ADDRESS_FILE, local_base_url
from smsproxy.gateway.signatures import SIGNATURE_METHODS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV", default=True):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A production process must be given its secret; only a debug process gets a throwaway one.
_DEV_SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "smsproxy.common",
    "smsproxy.gateway",
    "smsproxy.numbers",
    "smsproxy.proxy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Vonage's webhooks skip what follows but Common and XFrameOptions (common/fastpath.py).
    "smsproxy.common.fastpath.WebhookFastPathMiddleware",
    # Serves the admin's and the API docs' static files (collected by `collectstatic`) from the
    # web process itself, so production needs no separate static host and the docs no CDN.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "smsproxy.urls"
WSGI_APPLICATION = "smsproxy.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project-wide overrides of the admin's own templates (the dashboard, the SANDBOX
        # banner): looked up before every app's, so before django.contrib.admin's.
        "DIRS": [BASE_DIR / "smsproxy" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the delivery worker write to one file at once: WAL lets readers run
    # beside the writer, IMMEDIATE takes the write lock when a transaction starts (so two
    # writers queue on busy_timeout instead of failing with "database is locked" mid-way).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    # A health check is one more round trip (SELECT 1) at the start of every request. Without
    # it a connection the server dropped is found by a request's first statement, which the
    # webhooks and the token lookup of the API run again on a new connection
    # (smsproxy.common.connections); other requests fail once, and Django then replaces it.
    DATABASES["default"].setdefault(
        "CONN_HEALTH_CHECKS", env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
    )
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Parameters bound by the server, and a statement run 5 times on a connection prepared
        # there (psycopg's prepare_threshold): the webhook's few statements are then parsed and
        # planned once per connection, not per request. Turn off behind a pooler that cannot
        # keep prepared statements (PgBouncer in transaction mode before 1.21).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {"server_side_binding": True, "prepare_threshold": 5}
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed, not hashed: templates render without a manifest, so a process that has not
    # run `collectstatic` (tests, `make run`) still works; production runs it on release.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Security (production defaults; `manage.py check --deploy` passes with them) --------------
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The probes and the metrics scrape come over plain http inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first (an unauthenticated request gets 401 with `WWW-Authenticate: Token`): DRF's
    # TokenAuthentication with its lookup written once per process; then staff sessions.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "smsproxy.common.authentication.CachedSqlTokenAuthentication",
        "smsproxy.common.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # JSON unless a browser asks for HTML (the browsable API, for staff sessions).
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "smsproxy.common.api.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "smsproxy.common.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["smsproxy.common.throttling.FailOpenUserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env.str("API_THROTTLE_RATE", default="1200/minute")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "smsproxy API",
    "DESCRIPTION": "Private SMS conversations between two marketplace users over proxy numbers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The contract is the token (DESIGN.md §7). Staff sessions work too (the browsable API,
    # "Try it out" here sends the session cookie and the CSRF token) but are not an API
    # client's way in, so the schema leaves them out (and needs no extension for them).
    "AUTHENTICATION_WHITELIST": ["smsproxy.common.authentication.CachedSqlTokenAuthentication"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Swagger UI otherwise sends the schema URL to validator.swagger.io for a badge.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "smsproxy.proxy.schema.tighten_schema",
    ],
}

# --- smsproxy -----------------------------------------------------------------------------------
# Unset, it follows the address a local server runs on (`make run PORT=18400`): HOST/PORT in
# the environment, else what `make run` recorded for commands in another terminal (debug only:
# a production process is given its public https origin, see `check --deploy`).
PUBLIC_BASE_URL = env.str(
    "PUBLIC_BASE_URL",
    default=local_base_url(
        env.ENVIRON,
        recorded=BASE_DIR / RUN_ADDRESS_FILE
        if DEBUG and env.bool("DJANGO_READ_DOT_ENV", default=True)
        else None,
    ),
).rstrip("/")

VONAGE_API_KEY = env.str("VONAGE_API_KEY", default="")
VONAGE_API_SECRET = env.str("VONAGE_API_SECRET", default="")
VONAGE_SIGNATURE_SECRET = env.str("VONAGE_SIGNATURE_SECRET", default="")
VONAGE_SIGNATURE_METHOD = env.str("VONAGE_SIGNATURE_METHOD", default="md5hash").lower()
VONAGE_SIGNATURE_MAX_AGE = env.int("VONAGE_SIGNATURE_MAX_AGE", default=259200)
VONAGE_REST_HOST = env.str("VONAGE_REST_HOST", default="rest.nexmo.com")
VONAGE_API_HOST = env.str("VONAGE_API_HOST", default="api.nexmo.com")
VONAGE_TIMEOUT = env.float("VONAGE_TIMEOUT", default=10.0)
# Masked voice calls (DESIGN §12): numbers are linked to this Vonage application, whose answer
# and event URLs are /webhooks/vonage/voice/answer/ and /webhooks/vonage/voice/event/. The private
# key is a PEM string or the path of a PEM file (checked by `manage.py check`).
PROXY_VOICE = env.bool("PROXY_VOICE", default=False)
VONAGE_APPLICATION_ID = env.str("VONAGE_APPLICATION_ID", default="")
VONAGE_PRIVATE_KEY = env.str("VONAGE_PRIVATE_KEY", default="")

SMS_PROVIDER = env.str("SMS_PROVIDER", default="vonage" if VONAGE_API_KEY else "sandbox").lower()
if SMS_PROVIDER not in {"vonage", "sandbox"}:
    raise ImproperlyConfigured(f"SMS_PROVIDER must be 'vonage' or 'sandbox', not {SMS_PROVIDER!r}.")
if SMS_PROVIDER == "vonage" and not (VONAGE_API_KEY and VONAGE_API_SECRET):
    raise ImproperlyConfigured("SMS_PROVIDER=vonage needs VONAGE_API_KEY and VONAGE_API_SECRET.")
if VONAGE_SIGNATURE_METHOD not in SIGNATURE_METHODS:
    raise ImproperlyConfigured(
        f"VONAGE_SIGNATURE_METHOD must be one of {', '.join(SIGNATURE_METHODS)}."
    )

# The sandbox is an app of its own, installed only when it is the provider: a Vonage deployment
# has no sandbox tables and no sandbox admin.
if SMS_PROVIDER == "sandbox":
    INSTALLED_APPS.append("smsproxy.sandbox")

# The sandbox provider sends a `delivered` receipt for every SMS it "sends" over HTTP to the
# SMS's receipt webhook (PUBLIC_BASE_URL), as Vonage does; tests that do not want them switch
# this off.
SANDBOX_DELIVERY_RECEIPTS = env.bool("SANDBOX_DELIVERY_RECEIPTS", default=True)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# Seconds /readyz waits for the broker to answer before calling the process not ready.
READYZ_BROKER_TIMEOUT = env.float("READYZ_BROKER_TIMEOUT", default=1.0)
# Seconds since the delivery worker's last heartbeat (run_outbox's loop, or the Celery beat's
# outbox sweep on a worker, every 30 s) after which /readyz answers 503; 0 = not checked.
READYZ_WORKER_MAX_AGE = env.int("READYZ_WORKER_MAX_AGE", default=120)
if READYZ_WORKER_MAX_AGE < 0:
    raise ImproperlyConfigured("READYZ_WORKER_MAX_AGE must be 0 (off) or a number of seconds.")
# The bearer token Prometheus scrapes /metrics with; unset, /metrics answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# prometheus-client's multiprocess mode: every process of the host (gunicorn workers, Celery
# workers, run_outbox) writes its counters there and /metrics adds them up. prometheus-client
# reads the variable when first imported, which happens after the settings: exported here so
# that `.env` may set it too. Unset, each process counts for itself.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
SMS_RATE_LIMIT = env.float("SMS_RATE_LIMIT", default=25.0)
# Messages per second from any one sending number, on top of SMS_RATE_LIMIT; 0 = no per-number
# cap. US long numbers (10DLC) are throttled by the carriers per number, about 1 SMS a second.
SMS_RATE_LIMIT_PER_SENDER = env.float("SMS_RATE_LIMIT_PER_SENDER", default=0.0)
# Seconds after its claim that a row still in `sending` is taken to belong to a dead worker and
# settled by the sweep (re-sent once). Far longer than a send can take, the SDK's own resends
# of a dropped POST included: a shorter one would re-send texts a live worker is still sending.
OUTBOX_STALE_SENDING_AFTER = env.int("OUTBOX_STALE_SENDING_AFTER", default=300)
if OUTBOX_STALE_SENDING_AFTER < 60:
    raise ImproperlyConfigured(
        "OUTBOX_STALE_SENDING_AFTER must be at least 60 seconds: a live worker's send (with the "
        "Vonage SDK's own resends) must never be mistaken for a dead one."
    )

# --- Caches (the DRF throttle keeps its counters here) -----------------------------------------
# Production runs several web processes: their cache (and so the API throttle) must be shared,
# in the Redis the workers use, under a prefix of its own. A single-process local run keeps it
# in memory. The socket timeouts bound a request's wait on a Redis that does not answer.
if CELERY_BROKER_URL and urlsplit(CELERY_BROKER_URL).scheme not in {"redis", "rediss"}:
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL must be a redis:// or rediss:// URL: the web processes share their "
        "cache, and the workers their SMS rate limit, through it."
    )
if CELERY_BROKER_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CELERY_BROKER_URL,
            "KEY_PREFIX": "smsproxy:cache",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 3},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

PROXY_DEFAULT_COUNTRY = env.str("PROXY_DEFAULT_COUNTRY", default="GB").upper()
PROXY_CONVERSATION_TTL = env.int("PROXY_CONVERSATION_TTL", default=0)
PROXY_AUTO_PROVISION = env.bool("PROXY_AUTO_PROVISION", default=False)
PROXY_OUT_OF_SESSION_REPLY = env.str(
    "PROXY_OUT_OF_SESSION_REPLY",
    default="This conversation has ended. Messages to this number are no longer forwarded.",
)
PROXY_REDACT_NUMBERS = env.bool("PROXY_REDACT_NUMBERS", default=True)
PROXY_MAX_TEXT_LENGTH = env.int("PROXY_MAX_TEXT_LENGTH", default=1600)
if PROXY_MAX_TEXT_LENGTH < 1:
    raise ImproperlyConfigured("PROXY_MAX_TEXT_LENGTH must be a positive number of characters.")
PROXY_TTL_FROM = env.str("PROXY_TTL_FROM", default="created").strip().lower()
if PROXY_TTL_FROM not in {"created", "last_message"}:
    raise ImproperlyConfigured(
        f"PROXY_TTL_FROM must be 'created' or 'last_message', not {PROXY_TTL_FROM!r}."
    )
# Rule 6: out-of-session replies, all numbers together, per hour; the rest go unanswered.
PROXY_OUT_OF_SESSION_LIMIT = env.int("PROXY_OUT_OF_SESSION_LIMIT", default=200)
# Marketplace events and the intercept hook (DESIGN §11), both signed with PROXY_EVENTS_SECRET
# (a Standard Webhooks `whsec_...` secret; the system check smsproxy.E010 requires it with
# either URL).
PROXY_EVENTS_URL = env.str("PROXY_EVENTS_URL", default="")
PROXY_EVENTS_SECRET = env.str("PROXY_EVENTS_SECRET", default="")
PROXY_INTERCEPT_URL = env.str("PROXY_INTERCEPT_URL", default="")
PROXY_INTERCEPT_TIMEOUT = env.float("PROXY_INTERCEPT_TIMEOUT", default=2.0)
PROXY_INTERCEPT_FAILURE = env.str("PROXY_INTERCEPT_FAILURE", default="forward").strip().lower()
if PROXY_INTERCEPT_FAILURE not in {"forward", "hold"}:
    raise ImproperlyConfigured(
        f"PROXY_INTERCEPT_FAILURE must be 'forward' or 'hold', not {PROXY_INTERCEPT_FAILURE!r}."
    )
if PROXY_INTERCEPT_TIMEOUT <= 0:
    raise ImproperlyConfigured("PROXY_INTERCEPT_TIMEOUT must be a positive number of seconds.")

# --- Celery (used only when CELERY_BROKER_URL is set) ---------------------------------------
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Celery's Django fix-up closes the database connections around every task unless this many
# tasks ran on them: a new PostgreSQL connection per SMS. Never, in effect: a task_prerun
# handler (smsproxy/celery.py) replaces a connection that is broken or past CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 1_000_000
# Redis redelivers a task that was not acknowledged within this time (acks are late): longer
# than any delivery can take, and longer than the longest retry ETA (30 minutes). The socket
# timeouts bound a publish to a Redis that accepts connections but does not answer (kombu waits
# forever by default): the webhook that queued a forward must still answer Vonage in time.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_timeout": 3,
}
# Marketplace events go to a queue of their own, served by a worker of its own
# (`celery -A smsproxy worker -Q events`, the Procfile's `events`): a slow or failing endpoint
# of the marketplace never holds up a worker that sends SMS.
CELERY_TASK_ROUTES = {"smsproxy.proxy.deliver_events": {"queue": "events"}}
# `celery -A smsproxy beat`: the outbox sweep (stuck rows, timed-out concatenated SMS, expired
# conversations, queued rows whose hand-off was lost).
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "smsproxy.proxy.outbox_sweep", "schedule": 30.0},
    # Events due for a (re)try; a no-op without PROXY_EVENTS_URL.
    "events-sweep": {"task": "smsproxy.proxy.deliver_events", "schedule": 10.0},
}

# `plain` (a line of text per event) or `json` (one JSON object per line: time, level, logger,
# message, and the event's own fields, for a log shipper).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "smsproxy.common.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
