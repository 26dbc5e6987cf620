"""A stateful fake of Vonage's Numbers API at the HTTP boundary: the real SDK and
VonageProvider run, `responses` answers their requests like rest.nexmo.com would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses as responses_lib
from requests import PreparedRequest

from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.provisioning import provisioning_job_create, provisioning_job_run

REST = "https://rest.nexmo.com"
WEBHOOK_URL = "https://proxy.example.com/webhooks/vonage/inbound-sms/"

_OK = {"error-code": "200", "error-code-label": "success"}
# What Vonage answers when a number was taken between search and buy (numbers.yml).
NOT_AVAILABLE = (420, {"error-code": "420", "error-code-label": "method failed"})
SERVER_ERROR = (500, {"error-code": "500", "error-code-label": "internal error"})


@dataclass
class FakeVonage:
    """Numbers on offer, numbers the account rents, and failures queued per call."""

    # msisdn (no '+') → search entry as in numbers.yml
    available: dict[str, dict[str, Any]] = field(default_factory=dict)
    # msisdn (no '+') → owned entry as /account/numbers lists it
    owned: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (path, msisdn) → list of (status, body) answered once each before succeeding
    failures: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    search_failure: tuple[int, dict[str, Any]] | None = None
    list_failure: tuple[int, dict[str, Any]] | None = None
    # Called when /account/numbers is asked, before it answers (something happening meanwhile).
    on_list: Callable[[], None] | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def offer(self, *msisdns: str, country: str = "GB", cost: str = "1.25") -> None:
        for msisdn in msisdns:
            self.available[msisdn] = {
                "country": country,
                "msisdn": msisdn,
                "type": "mobile-lvn",
                "cost": cost,
                "features": ["SMS", "VOICE"],
            }

    def rent(self, msisdn: str, *, country: str = "GB", url: str = "") -> None:
        self.owned[msisdn] = {
            "country": country,
            "msisdn": msisdn,
            "moHttpUrl": url,
            "type": "mobile-lvn",
            "features": ["VOICE", "SMS"],
        }

    def fail(self, path: str, msisdn: str, answer: tuple[int, dict[str, Any]]) -> None:
        self.failures.setdefault((path, msisdn), []).append(answer)

    def calls(self, path: str) -> list[dict[str, str]]:
        return [params for _method, called, params in self.requests if called == path]

    # --- the HTTP side ------------------------------------------------------------------------

    def _answer(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.headers.get("Authorization", "").startswith("Basic ")
        url = urlsplit(str(request.url))
        if request.method == "GET":
            params = dict(parse_qsl(url.query))
        else:
            body = request.body or ""
            params = dict(parse_qsl(body.decode() if isinstance(body, bytes) else body))
        self.requests.append((str(request.method), url.path, params))
        status, payload = self._handle(url.path, params)
        return status, {"Content-Type": "application/json"}, json.dumps(payload)

    def _handle(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/number/search":
            if self.search_failure:
                return self.search_failure
            matching = [
                entry
                for msisdn, entry in self.available.items()
                if entry["country"] == params.get("country")
                and msisdn not in self.owned
                and params.get("pattern", "") in msisdn
            ]
            size, index = int(params.get("size", 10)), int(params.get("index", 1))
            numbers = matching[(index - 1) * size : index * size]
            return 200, ({"count": len(matching), "numbers": numbers} if numbers else {"count": 0})
        if path == "/account/numbers":
            if self.list_failure:
                return self.list_failure
            if self.on_list is not None:
                self.on_list()
            numbers = [
                entry
                for entry in self.owned.values()
                if not params.get("country") or entry["country"] == params["country"]
            ]
            return 200, ({"count": len(numbers), "numbers": numbers} if numbers else {"count": 0})
        msisdn = params["msisdn"]
        queued = self.failures.get((path, msisdn))
        if queued:
            return queued.pop(0)
        if path == "/number/buy":
            if msisdn in self.owned or msisdn not in self.available:
                return NOT_AVAILABLE
            self.rent(msisdn, country=params["country"])
            return 200, _OK
        if msisdn not in self.owned:
            return 420, {"error-code": "420", "error-code-label": "method failed"}
        if path == "/number/update":
            self.owned[msisdn]["moHttpUrl"] = params.get("moHttpUrl", "")
            return 200, _OK
        if path == "/number/cancel":
            del self.owned[msisdn]
            return 200, _OK
        raise AssertionError(f"unexpected Vonage call {path}")

    def install(self, rsps: responses_lib.RequestsMock) -> None:
        for method, path in (
            ("GET", "/number/search"),
            ("GET", "/account/numbers"),
            ("POST", "/number/buy"),
            ("POST", "/number/update"),
            ("POST", "/number/cancel"),
        ):
            rsps.add_callback(method, f"{REST}{path}", callback=self._answer)


def rent_sandbox_numbers(count: int) -> list[VirtualNumber]:
    """Rent `count` GB numbers from the sandbox provider (the test settings' default)."""
    job = provisioning_job_run(job=provisioning_job_create(country="GB", quantity=count))
    return list(job.numbers.order_by("msisdn"))


@pytest.fixture
def vonage(settings: Any, mocked_responses: responses_lib.RequestsMock) -> Iterator[FakeVonage]:
    """Switch to the Vonage provider, with Vonage's Numbers API faked over HTTP."""
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "test-secret-1"
    fake = FakeVonage()
    fake.install(mocked_responses)
    yield fake
