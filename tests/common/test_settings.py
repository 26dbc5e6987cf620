"""Settings are read from the environment; run the settings module in a subprocess per case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

ROOT = Path(__file__).resolve().parents[2]

_PRINT = (
    "import json, django; from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default'], 'provider': s.SMS_PROVIDER, "
    "'debug': s.DEBUG, 'ssl': s.SECURE_SSL_REDIRECT, 'hosts': s.ALLOWED_HOSTS, "
    "'cache': s.CACHES['default'], 'templates': s.TEMPLATES}, default=str))"
)


def _settings(**environment: str) -> subprocess.CompletedProcess[str]:
    return _run(_PRINT, **environment)


def _environment(**environment: str) -> dict[str, str]:
    """This process's environment without smsproxy's variables, plus `environment`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VONAGE_", "SMS_", "DATABASE_URL", "CELERY_"))
    }
    env.update({"DJANGO_SETTINGS_MODULE": "smsproxy.settings", "DJANGO_READ_DOT_ENV": "0"})
    env.update(environment)
    return env


def _run(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_environment(**environment),
        capture_output=True,
        text=True,
    )


def _ok(**environment: str) -> dict:
    result = _settings(**environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_postgres_database_url_is_parsed():
    conf = _ok(
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://smsproxy:s3cret@db.internal:6543/smsproxy_prod",
    )["db"]
    assert conf["ENGINE"] == "django.db.backends.postgresql"
    assert (conf["HOST"], conf["PORT"], conf["NAME"]) == ("db.internal", 6543, "smsproxy_prod")
    assert (conf["USER"], conf["PASSWORD"]) == ("smsproxy", "s3cret")
    # No SELECT 1 before each request; statements bound and prepared on the server.
    assert conf["CONN_HEALTH_CHECKS"] is False
    assert conf["OPTIONS"] == {"server_side_binding": True, "prepare_threshold": 5}


def test_postgres_health_checks_and_prepared_statements_can_be_switched():
    conf = _ok(
        DJANGO_SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://smsproxy:s3cret@db.internal:6543/smsproxy_prod",
        DATABASE_CONN_HEALTH_CHECKS="on",
        DATABASE_PREPARED_STATEMENTS="off",
    )["db"]
    assert conf["CONN_HEALTH_CHECKS"] is True
    assert not conf.get("OPTIONS")


def test_sqlite_default_is_tuned_for_web_and_worker():
    conf = _ok(DJANGO_DEBUG="1")["db"]
    assert conf["ENGINE"] == "django.db.backends.sqlite3"
    assert conf["NAME"].endswith("db.sqlite3")
    assert conf["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in conf["OPTIONS"]["init_command"]


def test_production_requires_a_secret_key():
    result = _settings()
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_debug_gets_a_dev_key_and_no_ssl_redirect():
    conf = _ok(DJANGO_DEBUG="true")
    assert conf["debug"] is True
    assert conf["ssl"] is False


def test_provider_defaults_to_vonage_when_a_key_is_set():
    assert _ok(DJANGO_DEBUG="1")["provider"] == "sandbox"
    assert (
        _ok(DJANGO_DEBUG="1", VONAGE_API_KEY="abcd1234", VONAGE_API_SECRET="s")["provider"]
        == "vonage"
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"SMS_PROVIDER": "twilio"}, "SMS_PROVIDER must be"),
        ({"SMS_PROVIDER": "vonage"}, "needs VONAGE_API_KEY"),
        ({"VONAGE_SIGNATURE_METHOD": "crc32"}, "VONAGE_SIGNATURE_METHOD must be"),
        ({"CELERY_BROKER_URL": "amqp://guest@mq.internal//"}, "CELERY_BROKER_URL must be"),
        ({"OUTBOX_STALE_SENDING_AFTER": "30"}, "OUTBOX_STALE_SENDING_AFTER must be"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be"),
        ({"READYZ_WORKER_MAX_AGE": "-1"}, "READYZ_WORKER_MAX_AGE must be"),
    ],
)
def test_bad_settings_are_refused(environment, message):
    result = _settings(DJANGO_DEBUG="1", **environment)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_cache_is_in_memory_for_a_single_process():
    assert _ok(DJANGO_DEBUG="1")["cache"] == {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache"
    }


def test_the_cache_is_shared_in_redis_when_celery_is_used():
    url = "redis://:s3cret@redis.internal:6379/2"

    cache = _ok(DJANGO_DEBUG="1", CELERY_BROKER_URL=url)["cache"]

    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == url
    assert cache["KEY_PREFIX"] == "smsproxy:cache"


@pytest.mark.skipif(
    not getattr(django_settings, "TEST_CELERY_BROKER_URL", ""),
    reason="CELERY_BROKER_URL (a Redis database the tests may use) is not set",
)
def test_two_processes_share_the_cache_through_redis():
    key = f"test-shared-{uuid.uuid4().hex}"
    environment = {"DJANGO_DEBUG": "1", "CELERY_BROKER_URL": django_settings.TEST_CELERY_BROKER_URL}
    code = "import django; django.setup(); from django.core.cache import cache; "

    writer = _run(code + f"cache.set({key!r}, 'from the first process', 30)", **environment)
    reader = _run(code + f"print(cache.get({key!r})); cache.delete({key!r})", **environment)

    assert writer.returncode == 0, writer.stderr
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "from the first process"


def test_every_template_directory_exists():
    for engine in _ok(DJANGO_DEBUG="1")["templates"]:
        for directory in engine.get("DIRS", []):
            assert Path(directory).is_dir(), directory


def test_allowed_hosts_is_a_comma_list():
    assert _ok(DJANGO_DEBUG="1", DJANGO_ALLOWED_HOSTS="a.example,b.example")["hosts"] == [
        "a.example",
        "b.example",
    ]


def test_check_deploy_passes_with_production_env():
    env = _environment(
        DJANGO_SECRET_KEY="k3y-" + "q8Zr!" * 12,
        DJANGO_ALLOWED_HOSTS="proxy.example.com",
        PUBLIC_BASE_URL="https://proxy.example.com",
        VONAGE_API_KEY="abcd1234",
        VONAGE_API_SECRET="secret",
        VONAGE_SIGNATURE_SECRET="sigsecret",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    env.pop("VONAGE_SIGNATURE_SECRET")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "smsproxy.W001" in result.stdout + result.stderr


def test_stdlib_numbers_module_is_not_shadowed():
    import numbers

    assert numbers.__file__ is not None
    assert "smsproxy" not in numbers.__file__
    assert hasattr(numbers, "Integral")


def test_a_command_without_settings_names_the_setting_and_the_fix():
    """Django alone fails later with "Models aren't loaded yet", naming neither."""
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert "make run" in result.stderr
    assert "AppRegistryNotReady" not in result.stderr
