"""OpenAPI schema without warnings, and the docs page served without any external host."""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS

pytestmark = pytest.mark.django_db

CONVERSATION_PATHS = {
    "/api/conversations/": {"get", "post"},
    "/api/conversations/{public_id}/": {"get"},
    "/api/conversations/{public_id}/close/": {"post"},
    "/api/conversations/{public_id}/messages/": {"get"},
}


def test_schema_generates_and_validates_without_warnings(tmp_path: Path) -> None:
    GENERATOR_STATS.reset()
    target = tmp_path / "schema.yml"

    # --fail-on-warn raises on any warning or error; --validate checks it against OpenAPI 3.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))

    assert not GENERATOR_STATS
    schema = yaml.safe_load(target.read_text())
    for path, methods in CONVERSATION_PATHS.items():
        assert set(schema["paths"][path]) >= methods, path
    list_schema = schema["paths"]["/api/conversations/"]["get"]["responses"]["200"]
    page = list_schema["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][page]["properties"]) == {
        "count",
        "next",
        "previous",
        "results",
    }
    create = schema["paths"]["/api/conversations/"]["post"]
    assert {"201", "400", "503"} <= set(create["responses"])
    assert schema["components"]["securitySchemes"]["tokenAuth"]["type"] == "apiKey"


def test_schema_endpoint(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == HTTPStatus.OK
    assert b"/api/conversations/{public_id}/close/" in response.content


def test_docs_render_from_local_static_files_only(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert "swagger-ui" in html
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert references, "the page loads Swagger UI's assets"
    for reference in references:
        assert reference.startswith("/static/"), reference
        assert finders.find(reference.removeprefix("/static/")), f"{reference} is not shipped"
    # No URL to any other host anywhere in the page (no CDN, no validator badge).
    assert not re.search(r"(?:https?:)?//(?!/)[a-z0-9.-]+\.[a-z]{2,}", html), re.findall(
        r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"']*", html
    )
    assert '"validatorUrl": null' in html
