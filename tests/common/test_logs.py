"""LOG_FORMAT=json: one JSON object per line (time, level, logger, message, the event's fields)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from django.test import RequestFactory

from smsproxy.common.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("smsproxy.proxy.services.writes")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_record_is_one_json_object_with_the_event_fields() -> None:
    line = JsonFormatter().format(
        record(
            "pool_exhausted: %s in %d live conversation(s)",
            "+44*******123",
            3,
            event="pool_exhausted",
            country="GB",
            live_conversations=3,
        )
    )

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "smsproxy.proxy.services.writes"
    assert entry["message"] == "pool_exhausted: +44*******123 in 3 live conversation(s)"
    assert entry["time"].endswith("+00:00")
    assert entry["event"] == "pool_exhausted"
    assert entry["country"] == "GB"
    assert entry["live_conversations"] == 3
    assert not {"args", "msg", "levelno", "pathname", "exc_info"} & entry.keys()


def test_a_traceback_stays_inside_the_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        failed = record("It failed")
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: broken" in json.loads(line)["exception"]


def test_a_request_field_shows_its_path_without_the_query_string() -> None:
    # Django's request loggers pass the request; a GET webhook's query holds the sender.
    request = RequestFactory().get("/webhooks/vonage/inbound-sms/", {"msisdn": "447700900123"})
    entry = json.loads(JsonFormatter().format(record("Bad Request", request=request)))
    assert entry["request"] == "GET /webhooks/vonage/inbound-sms/"
    assert "447700900123" not in json.dumps(entry)


def test_an_extra_that_is_no_json_type_is_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record("Path", where=Path("/tmp/x"))))
    assert entry["where"] == "/tmp/x"


def test_log_format_json_makes_every_line_of_the_service_a_json_object() -> None:
    code = (
        "import django, logging; django.setup(); "
        "log = logging.getLogger('smsproxy.test'); "
        "log.warning('first %s', 1, extra={'event': 'demo', 'country': 'GB'}); "
        "log.info('second')"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LOG_", "DATABASE_URL", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="smsproxy.settings",
        DJANGO_READ_DOT_ENV="0",
        DJANGO_DEBUG="1",
        LOG_FORMAT="json",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in lines] == ["first 1", "second"]
    assert lines[0]["event"] == "demo" and lines[0]["country"] == "GB"
    assert lines[1]["level"] == "INFO" and lines[1]["logger"] == "smsproxy.test"
