"""The Vonage provider, on the official SDK (vonage 4.9.1).

SDK pitfalls this module avoids (see VONAGE.md):

- The SDK has no timeout; a `signature_secret` on its `Auth` breaks every send; a dropped
  connection makes it re-send a POST (one SMS, several times). `vonage_client` builds the clients
  so that none of that happens, one per thread (a client's headers dict and its one kept-alive
  connection are not for sharing).
- The SDK keeps one mutable headers dict per client, and a JSON call leaves
  `Content-Type: application/json` on later form POSTs. These clients only ever make the
  form/query calls of SMS, Numbers and Number Insight.
- `sms.send` raises a bare `SmsError` for a single failed part (throttling included) and hides
  the status; `NumberParams` rejects a national number for Number Insight. Sending SMS and Number
  Insight therefore go through the SDK's HTTP client and the JSON answer is read here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, TypeVar

import requests
from vonage import Vonage
from vonage_http_client import HttpClient, HttpRequestError
from vonage_numbers import ListOwnedNumbersFilter, SearchAvailableNumbersFilter
from vonage_numbers.errors import NumbersError

from smsproxy.common.privacy import text_mask_numbers

from .base import (
    DEFAULT_NUMBER_TYPE,
    NUMBER_FEATURES,
    NUMBERS_PAGE_SIZE,
    AvailableNumber,
    InvalidNumberError,
    NumberInsight,
    NumberNotOwnedError,
    NumberUnavailableError,
    OwnedNumber,
    PermanentProviderError,
    ProviderError,
    SendResult,
    SentPart,
    TransientProviderError,
    check_client_ref,
)
from .encoding import is_gsm7
from .vonage_client import VonageClients

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Status codes of the SMS API and Number Insight that mean "try again later".
TRANSIENT_STATUSES = frozenset({"1", "5"})
# What a person may type in a phone number besides digits.
_NUMBER_CHARS = frozenset("0123456789+-(). ")


def _wire_msisdn(number: str) -> str:
    """E.164 with '+' → Vonage's form (digits only, no '+')."""
    return number.strip().removeprefix("+")


def _e164(msisdn: str) -> str:
    return f"+{msisdn.lstrip('+')}"


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def features_param(features: tuple[str, ...]) -> str:
    """Vonage's `features` filter: a comma join in the canonical order (`SMS,VOICE,MMS`)."""
    requested = {feature.strip().upper() for feature in features if feature.strip()}
    unknown = requested - set(NUMBER_FEATURES)
    if unknown:
        raise ValueError(f"Unknown number features {sorted(unknown)}; use {NUMBER_FEATURES}.")
    return ",".join(feature for feature in NUMBER_FEATURES if feature in requested)


class VonageProvider:
    """SmsProvider backed by a Vonage account (API key and secret)."""

    name = "vonage"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        rest_host: str = "rest.nexmo.com",
        api_host: str = "api.nexmo.com",
        timeout: float = 10.0,
        voice_application_id: str = "",
    ) -> None:
        if not (api_key and api_secret):
            raise ValueError("The Vonage provider needs an API key and an API secret.")
        if timeout <= 0:
            raise ValueError("The Vonage timeout must be a positive number of seconds.")
        self.timeout = timeout
        # With PROXY_VOICE on: every configured number is also linked to this application,
        # whose answer and event URLs carry its calls (DESIGN §12).
        self.voice_application_id = voice_application_id
        self._clients = VonageClients(
            api_key=api_key,
            api_secret=api_secret,
            rest_host=rest_host,
            api_host=api_host,
            timeout=timeout,
        )

    @property
    def _client(self) -> Vonage:
        return self._clients.get()

    @property
    def _http(self) -> HttpClient:
        return self._clients.get().http_client

    # --- numbers ------------------------------------------------------------------------------

    def search_numbers(
        self,
        *,
        country: str,
        type: str = DEFAULT_NUMBER_TYPE,
        features: tuple[str, ...] = ("SMS",),
        pattern: str = "",
        size: int = 10,
        index: int = 1,
    ) -> list[AvailableNumber]:
        # `search_pattern=1`: numbers that *contain* `pattern` anywhere.
        search_filter = SearchAvailableNumbersFilter(
            country=country.upper(),
            type=type or None,
            features=features_param(features) or None,
            pattern=pattern or None,
            search_pattern=1 if pattern else None,
            size=max(1, min(size, NUMBERS_PAGE_SIZE)),
            index=index if index > 1 else None,
        )
        found, _count, _next = self._call(
            "search numbers",
            lambda: self._client.numbers.search_available_numbers(search_filter),
        )
        return [
            AvailableNumber(
                msisdn=_e164(number.msisdn or ""),
                country=(number.country or country).upper(),
                type=number.type or type,
                features=tuple(number.features or ()),
                monthly_cost=_decimal(number.cost),
            )
            for number in found
            if number.msisdn
        ]

    def list_owned_numbers(self, *, country: str = "") -> list[OwnedNumber]:
        owned: list[OwnedNumber] = []
        index: int | None = 1
        while index is not None:
            page_filter = ListOwnedNumbersFilter(
                country=country.upper() or None, size=NUMBERS_PAGE_SIZE, index=index
            )
            page, _count, next_index = self._call(
                "list owned numbers",
                functools.partial(self._client.numbers.list_owned_numbers, page_filter),
            )
            owned.extend(
                OwnedNumber(
                    msisdn=_e164(number.msisdn or ""),
                    country=(number.country or "").upper(),
                    type=number.type or "",
                    features=tuple(number.features or ()),
                    inbound_url=number.mo_http_url or "",
                )
                for number in page
                if number.msisdn
            )
            # An empty page ends the walk even if `count` promised more (no endless loop).
            index = next_index if page else None
        return owned

    def buy_number(self, *, country: str, msisdn: str) -> None:
        self._number_action(
            "/number/buy",
            {"country": country.upper(), "msisdn": _wire_msisdn(msisdn)},
            operation="buy number",
            http_420=NumberUnavailableError,
        )

    def configure_number(self, *, country: str, msisdn: str, inbound_url: str) -> None:
        params = {"country": country.upper(), "msisdn": _wire_msisdn(msisdn)}
        params["moHttpUrl"] = inbound_url
        if self.voice_application_id:
            params["app_id"] = self.voice_application_id
        self._number_action(
            "/number/update",
            params,
            operation="configure number",
            http_420=NumberNotOwnedError,
        )

    def cancel_number(self, *, country: str, msisdn: str) -> None:
        self._number_action(
            "/number/cancel",
            {"country": country.upper(), "msisdn": _wire_msisdn(msisdn)},
            operation="cancel number",
            http_420=NumberNotOwnedError,
        )

    def _number_action(
        self,
        path: str,
        params: dict[str, str],
        *,
        operation: str,
        http_420: type[ProviderError],
    ) -> None:
        # Vonage answers a refused buy with HTTP 420 ("method failed": taken, already ours,
        # needs an address) and an update/cancel of a number the account does not rent the same
        # way; the label says which.
        response = self._call(
            operation,
            lambda: self._http.post(self._http.rest_host, path, params, "basic", "form"),
            http_420=http_420,
        )
        body = response if isinstance(response, dict) else {}
        code = str(body.get("error-code", ""))
        if code != "200":
            label = str(body.get("error-code-label") or "unexpected answer")
            error_class = http_420 if code == "420" else PermanentProviderError
            raise error_class(f"Vonage refused to {operation}: {label}", code or "unknown")

    # --- Number Insight -----------------------------------------------------------------------

    def insight_basic(self, *, number: str, country: str = "") -> NumberInsight:
        digits = "".join(char for char in number if char.isdigit())
        if not digits or len(digits) > 15 or set(number) - _NUMBER_CHARS:
            raise InvalidNumberError(f"{number!r} is not a phone number.", "3")
        # International format without '+'; `country` only for a number given nationally
        # (Vonage rejects a country that contradicts the number's prefix).
        params = {"number": digits}
        if country:
            params["country"] = country.upper()
        body = self._call(
            "look up number",
            lambda: self._http.get(self._http.api_host, "/ni/basic/json", params, "basic"),
        )
        if not isinstance(body, dict):
            raise TransientProviderError("Number Insight gave an unreadable answer.", "unknown")
        status = str(body.get("status", ""))
        message = str(body.get("status_message") or body.get("error_text") or "")
        if status != "0":
            text = f"Number Insight failed: {message or 'status ' + status}"
            if status == "3":
                raise InvalidNumberError(text, status)
            if status in TRANSIENT_STATUSES:
                raise TransientProviderError(text, status)
            raise PermanentProviderError(text, status)
        international = str(body.get("international_format_number") or "")
        if not international:
            raise InvalidNumberError("Number Insight returned no number.", "3")
        return NumberInsight(
            e164=_e164(international),
            country=str(body.get("country_code") or "").upper(),
        )

    # --- SMS ----------------------------------------------------------------------------------

    def send_sms(
        self,
        *,
        sender: str,
        recipient: str,
        text: str,
        client_ref: str,
        callback_url: str,
    ) -> SendResult:
        check_client_ref(client_ref)
        params = {
            "from": _wire_msisdn(sender),
            "to": _wire_msisdn(recipient),
            "text": text,
            "type": "text" if is_gsm7(text) else "unicode",
        }
        if client_ref:
            params["client-ref"] = client_ref
        if callback_url:
            params["callback"] = callback_url
            params["status-report-req"] = "true"
        body = self._call(
            "send SMS",
            lambda: self._http.post(self._http.rest_host, "/sms/json", params, "basic", "form"),
        )
        return self._send_result(body)

    @staticmethod
    def _send_result(body: Any) -> SendResult:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            # Vonage may have accepted the message; the outbox treats this like a timeout.
            raise TransientProviderError("Vonage gave an unreadable answer to an SMS send.", "")
        accepted: list[SentPart] = []
        failure: dict[str, Any] | None = None
        for part in messages:
            if str(part.get("status")) == "0" and part.get("message-id"):
                accepted.append(
                    SentPart(
                        message_id=str(part["message-id"]),
                        price=_decimal(part.get("message-price")),
                        network=str(part.get("network") or ""),
                    )
                )
            elif failure is None:
                failure = part
        if failure is None:
            return SendResult(parts=tuple(accepted))
        status = str(failure.get("status", ""))
        text = str(failure.get("error-text") or f"SMS status {status}")
        error_class = (
            TransientProviderError if status in TRANSIENT_STATUSES else PermanentProviderError
        )
        raise error_class(text, status, accepted_parts=tuple(accepted))

    # --- errors -------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        call: Callable[[], T],
        *,
        http_420: type[ProviderError] = PermanentProviderError,
    ) -> T:
        """Run one SDK call, turning every failure into a typed `ProviderError`."""
        try:
            return call()
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise TransientProviderError(
                f"Vonage did not answer ({operation}) within {self.timeout:g} s: {exc}",
                "timeout",
            ) from exc
        except requests.ConnectionError as exc:
            raise TransientProviderError(
                f"Could not reach Vonage ({operation}): {exc}", "connection"
            ) from exc
        except HttpRequestError as exc:
            self._raise_http_error(exc, operation, http_420)
        except NumbersError as exc:
            raise PermanentProviderError(f"Vonage refused to {operation}: {exc}") from exc

    @staticmethod
    def _raise_http_error(
        exc: HttpRequestError, operation: str, http_420: type[ProviderError]
    ) -> NoReturn:
        response = exc.response
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        label = ""
        code = str(status)
        if isinstance(body, dict):
            code = str(body.get("error-code") or body.get("status") or status)
            label = str(
                body.get("error-code-label")
                or body.get("error-text")
                or body.get("detail")
                or body.get("title")
                or body.get("status_message")
                or ""
            )
        if not label:
            label = (response.text or response.reason or "").strip()[:200] or f"HTTP {status}"
        text = f"Vonage answered HTTP {status} to {operation}: {label}"
        logger.warning("%s", text_mask_numbers(text))  # Vonage's text may quote a number
        error_class: type[ProviderError]
        if status == 420:
            error_class = http_420
        elif status == 429 or status >= 500:
            error_class = TransientProviderError
        else:
            error_class = PermanentProviderError
        raise error_class(text, code, http_status=status) from exc
