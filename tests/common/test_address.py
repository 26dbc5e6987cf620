"""PUBLIC_BASE_URL follows the address `make run HOST=... PORT=...` serves on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest

from smsproxy.common.address import local_base_url, unreachable_hint

ROOT = Path(__file__).resolve().parents[2]


def test_port_alone_keeps_the_loopback_host() -> None:
    assert local_base_url({"PORT": "18400"}) == "http://127.0.0.1:18400"


def test_host_and_port() -> None:
    assert local_base_url({"HOST": "localhost", "PORT": "9000"}) == "http://localhost:9000"


def test_a_server_bound_to_every_interface_is_reached_on_loopback() -> None:
    assert local_base_url({"HOST": "0.0.0.0", "PORT": "9000"}) == "http://127.0.0.1:9000"


def test_nothing_set_is_the_documented_default(tmp_path: Path) -> None:
    assert local_base_url({}, recorded=tmp_path / "absent") == "http://127.0.0.1:8000"


def test_the_address_recorded_by_make_run_serves_a_second_terminal(tmp_path: Path) -> None:
    recorded = tmp_path / "base-url"
    recorded.write_text("http://127.0.0.1:18400/\n")

    assert local_base_url({}, recorded=recorded) == "http://127.0.0.1:18400"
    # The environment of the server's own processes wins over the file.
    assert local_base_url({"PORT": "18500"}, recorded=recorded) == "http://127.0.0.1:18500"


def test_a_garbled_record_is_ignored(tmp_path: Path) -> None:
    recorded = tmp_path / "base-url"
    recorded.write_text("127.0.0.1:18400")

    assert local_base_url({}, recorded=recorded) == "http://127.0.0.1:8000"


def _public_base_url(**environment: str) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PUBLIC_BASE_URL", "HOST", "PORT"))
    }
    env.update(
        {"DJANGO_SETTINGS_MODULE": "smsproxy.settings", "DJANGO_READ_DOT_ENV": "0"}, **environment
    )
    code = (
        "import json; from django.conf import settings as s; print(json.dumps(s.PUBLIC_BASE_URL))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"PORT": "18400"}, "http://127.0.0.1:18400"),
        ({"PORT": "18400", "PUBLIC_BASE_URL": "https://abc.ngrok.app/"}, "https://abc.ngrok.app"),
    ],
)
def test_settings_derive_public_base_url(environment: dict[str, str], expected: str) -> None:
    assert _public_base_url(DJANGO_DEBUG="1", **environment) == expected


def test_the_hint_names_both_ways_to_point_elsewhere() -> None:
    hint = unreachable_hint(
        "http://127.0.0.1:8000/x/", ConnectionRefusedError("refused"), example="http://h:1/x/"
    )

    assert "Could not reach http://127.0.0.1:8000/x/" in hint
    assert "--url http://h:1/x/" in hint
    assert "PUBLIC_BASE_URL" in hint


@pytest.mark.django_db
def test_the_site_root_leads_to_the_admin(client) -> None:
    response = client.get("/")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/admin/"
