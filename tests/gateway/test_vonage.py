"""The Vonage provider at the HTTP boundary: the real SDK runs, `responses` plays Vonage."""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured

from smsproxy.gateway import get_provider
from smsproxy.gateway.base import (
    CLIENT_REF_MAX_LENGTH,
    AvailableNumber,
    InvalidNumberError,
    NumberInsight,
    NumberNotOwnedError,
    NumberUnavailableError,
    OwnedNumber,
    PermanentProviderError,
    ProviderError,
    SendResult,
    TransientProviderError,
)
from smsproxy.gateway.vonage import VonageProvider
from smsproxy.sandbox.provider import SandboxProvider

REST_HOST = "rest.vonage.test:8443"
API_HOST = "api.vonage.test:9443"
API_KEY = "abcd1234"
API_SECRET = "abcdef0123456789"
TIMEOUT = 2.5
CALLBACK = "https://proxy.example.com/webhooks/vonage/delivery-receipt/"
NUMBERS_OK = {"error-code": "200", "error-code-label": "success"}


@pytest.fixture
def provider(settings: Any) -> VonageProvider:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = API_KEY
    settings.VONAGE_API_SECRET = API_SECRET
    settings.VONAGE_REST_HOST = REST_HOST
    settings.VONAGE_API_HOST = API_HOST
    settings.VONAGE_TIMEOUT = TIMEOUT
    built = get_provider()
    assert isinstance(built, VonageProvider)
    return built


def rest(path: str) -> str:
    return f"https://{REST_HOST}{path}"


def api(path: str) -> str:
    return f"https://{API_HOST}{path}"


def the_request(rsps: responses.RequestsMock) -> Any:
    assert len(rsps.calls) == 1
    return rsps.calls[0].request


def query_of(request: Any) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(request.url).query).items()}


def form_of(request: Any) -> dict[str, str]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


def assert_vonage_request(request: Any, *, method: str, url: str) -> None:
    """Method, exact URL (scheme, host with port, path), Basic auth and the timeout."""
    assert request.method == method
    assert request.url.split("?")[0] == url
    expected = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.req_kwargs["timeout"] == TIMEOUT
    if method == "POST":
        # Form encoded, never the JSON content type a shared-headers client would leak.
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def sms_part(message_id: str, *, status: str = "0", **extra: str) -> dict[str, str]:
    part = {"status": status}
    if status == "0":
        part.update(
            {
                "to": "447700900123",
                "message-id": message_id,
                "remaining-balance": "3.14159265",
                "message-price": "0.03330000",
                "network": "23410",
                "client-ref": "42",
            }
        )
    part.update(extra)
    return part


def send(provider: VonageProvider, *, text: str, client_ref: str = "42") -> SendResult:
    return provider.send_sms(
        sender="+447700900001",
        recipient="+447700900123",
        text=text,
        client_ref=client_ref,
        callback_url=CALLBACK,
    )


# --- provider selection ---------------------------------------------------------------------------


def test_get_provider_is_cached_and_rebuilt_when_settings_change(
    provider: VonageProvider, settings: Any
) -> None:
    assert get_provider() is provider
    settings.VONAGE_REST_HOST = "localhost:9999"
    rebuilt = get_provider()
    assert isinstance(rebuilt, VonageProvider)
    assert rebuilt is not provider
    settings.SMS_PROVIDER = "sandbox"
    assert isinstance(get_provider(), SandboxProvider)


def test_get_provider_refuses_an_unknown_provider(settings: Any) -> None:
    settings.SMS_PROVIDER = "carrier-pigeon"
    with pytest.raises(ImproperlyConfigured, match="carrier-pigeon"):
        get_provider()


def test_the_client_has_no_signature_secret(provider: VonageProvider, settings: Any) -> None:
    # A signature secret on the client's Auth makes sms.send sign (and break) every send.
    settings.VONAGE_SIGNATURE_SECRET = "signing-secret"
    assert provider._http.auth._signature_secret is None


# --- search -----------------------------------------------------------------------------------


def test_search_numbers(provider: VonageProvider, mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.get(
        rest("/number/search"),
        json={
            "count": 1234,
            "numbers": [
                {
                    "country": "GB",
                    "msisdn": "447700900000",
                    "type": "mobile-lvn",
                    "cost": "1.25",
                    "features": ["VOICE", "SMS", "MMS"],
                },
                {
                    "country": "GB",
                    "msisdn": "447700900001",
                    "type": "mobile-lvn",
                    "cost": "1.25",
                    "features": ["VOICE", "SMS"],
                },
            ],
        },
    )

    found = provider.search_numbers(
        country="gb", type="mobile-lvn", features=("VOICE", "SMS"), pattern="7700", size=2
    )

    assert found == [
        AvailableNumber(
            "+447700900000", "GB", "mobile-lvn", ("VOICE", "SMS", "MMS"), Decimal("1.25")
        ),
        AvailableNumber("+447700900001", "GB", "mobile-lvn", ("VOICE", "SMS"), Decimal("1.25")),
    ]
    request = the_request(mocked_responses)
    assert_vonage_request(request, method="GET", url=rest("/number/search"))
    assert query_of(request) == {
        "country": "GB",
        "type": "mobile-lvn",
        "features": "SMS,VOICE",
        "pattern": "7700",
        "search_pattern": "1",
        "size": "2",
    }


def test_search_without_pattern_sends_no_pattern(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(rest("/number/search"), json={"count": 0})

    assert provider.search_numbers(country="US", size=500) == []

    query = query_of(the_request(mocked_responses))
    assert "pattern" not in query
    assert "search_pattern" not in query
    assert query["size"] == "100"  # Vonage's maximum page size
    assert query["features"] == "SMS"


def test_search_asks_for_a_later_page(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(rest("/number/search"), json={"count": 0})

    provider.search_numbers(country="GB", size=100, index=3)

    query = query_of(the_request(mocked_responses))
    assert (query["size"], query["index"]) == ("100", "3")


# --- owned numbers ------------------------------------------------------------------------------


def test_list_owned_numbers_pages_through_everything(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    def owned(index: int) -> dict[str, Any]:
        return {
            "country": "GB",
            "msisdn": f"447700900{index:03d}",
            "moHttpUrl": "https://example.com/webhooks/inbound-sms",
            "type": "mobile-lvn",
            "features": ["VOICE", "SMS", "MMS"],
        }

    mocked_responses.get(
        rest("/account/numbers"),
        json={"count": 150, "numbers": [owned(i) for i in range(100)]},
        match=[
            responses.matchers.query_param_matcher({"country": "GB", "size": "100", "index": "1"})
        ],
    )
    mocked_responses.get(
        rest("/account/numbers"),
        json={"count": 150, "numbers": [owned(i) for i in range(100, 150)]},
        match=[
            responses.matchers.query_param_matcher({"country": "GB", "size": "100", "index": "2"})
        ],
    )

    numbers = provider.list_owned_numbers(country="GB")

    assert len(numbers) == 150
    assert numbers[0] == OwnedNumber(
        msisdn="+447700900000",
        country="GB",
        type="mobile-lvn",
        features=("VOICE", "SMS", "MMS"),
        inbound_url="https://example.com/webhooks/inbound-sms",
    )
    assert numbers[-1].msisdn == "+447700900149"
    assert len(mocked_responses.calls) == 2
    for call in mocked_responses.calls:
        assert_vonage_request(call.request, method="GET", url=rest("/account/numbers"))


def test_list_owned_numbers_of_an_empty_account(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(rest("/account/numbers"), json={"count": 0})

    assert provider.list_owned_numbers() == []
    assert query_of(the_request(mocked_responses)) == {"size": "100", "index": "1"}


# --- buy / configure / cancel -------------------------------------------------------------------


def test_buy_number(provider: VonageProvider, mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.post(rest("/number/buy"), json=NUMBERS_OK)

    provider.buy_number(country="GB", msisdn="+447700900000")

    request = the_request(mocked_responses)
    assert_vonage_request(request, method="POST", url=rest("/number/buy"))
    assert form_of(request) == {"country": "GB", "msisdn": "447700900000"}


def test_configure_number(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(rest("/number/update"), json=NUMBERS_OK)

    provider.configure_number(
        country="GB",
        msisdn="+447700900000",
        inbound_url="https://proxy.example.com/webhooks/vonage/inbound-sms/",
    )

    request = the_request(mocked_responses)
    assert_vonage_request(request, method="POST", url=rest("/number/update"))
    assert form_of(request) == {
        "country": "GB",
        "msisdn": "447700900000",
        "moHttpUrl": "https://proxy.example.com/webhooks/vonage/inbound-sms/",
    }


def test_cancel_number(provider: VonageProvider, mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.post(rest("/number/cancel"), json=NUMBERS_OK)

    provider.cancel_number(country="GB", msisdn="+447700900000")

    request = the_request(mocked_responses)
    assert_vonage_request(request, method="POST", url=rest("/number/cancel"))
    assert form_of(request) == {"country": "GB", "msisdn": "447700900000"}


def test_an_error_code_in_a_200_answer_is_an_error(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(
        rest("/number/buy"), json={"error-code": "401", "error-code-label": "authentication failed"}
    )

    with pytest.raises(PermanentProviderError) as caught:
        provider.buy_number(country="GB", msisdn="+447700900000")
    assert caught.value.code == "401"
    assert "authentication failed" in caught.value.text


# --- Number Insight -----------------------------------------------------------------------------

INSIGHT_OK = {
    "status": 0,
    "status_message": "Success",
    "request_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "international_format_number": "447700900000",
    "national_format_number": "07700 900000",
    "country_code": "GB",
    "country_code_iso3": "GBR",
    "country_name": "United Kingdom",
    "country_prefix": "44",
}


def test_insight_basic(provider: VonageProvider, mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.get(api("/ni/basic/json"), json=INSIGHT_OK)

    insight = provider.insight_basic(number="+447700900000")

    assert insight == NumberInsight(e164="+447700900000", country="GB")
    request = the_request(mocked_responses)
    assert_vonage_request(request, method="GET", url=api("/ni/basic/json"))
    # International format without '+', and no country for an international number.
    assert query_of(request) == {"number": "447700900000"}


def test_insight_basic_of_a_national_number_passes_the_country(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.get(api("/ni/basic/json"), json=INSIGHT_OK)

    provider.insight_basic(number="07700 900000", country="gb")

    assert query_of(the_request(mocked_responses)) == {"number": "07700900000", "country": "GB"}


@pytest.mark.parametrize(
    ("status", "message", "error_class"),
    [
        (3, "Invalid request :: Not valid number format detected", InvalidNumberError),
        (1, "Throttled", TransientProviderError),
        (5, "Internal Error", TransientProviderError),
        (4, "Invalid credentials", PermanentProviderError),
        (9, "Partner quota exceeded", PermanentProviderError),
    ],
)
def test_insight_status_errors(
    provider: VonageProvider,
    mocked_responses: responses.RequestsMock,
    status: int,
    message: str,
    error_class: type[ProviderError],
) -> None:
    mocked_responses.get(
        api("/ni/basic/json"),
        json={"status": status, "status_message": message, "request_id": "x"},
    )

    with pytest.raises(error_class) as caught:
        provider.insight_basic(number="+447700900000")

    assert type(caught.value) is error_class
    assert caught.value.code == str(status)
    assert message in caught.value.text


def test_insight_of_something_that_is_no_number_is_not_sent(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    with pytest.raises(InvalidNumberError):
        provider.insight_basic(number="call me maybe")
    assert len(mocked_responses.calls) == 0


# --- SMS ----------------------------------------------------------------------------------------


def test_send_sms(provider: VonageProvider, mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.post(
        rest("/sms/json"),
        json={"message-count": "1", "messages": [sms_part("0A0000000123ABCD1")]},
    )

    result = send(provider, text="Hello World!")

    assert result.message_ids == ["0A0000000123ABCD1"]
    assert result.parts[0].price == Decimal("0.03330000")
    assert result.parts[0].network == "23410"
    request = the_request(mocked_responses)
    assert_vonage_request(request, method="POST", url=rest("/sms/json"))
    assert form_of(request) == {
        "from": "447700900001",
        "to": "447700900123",
        "text": "Hello World!",
        "type": "text",
        "client-ref": "42",
        "callback": CALLBACK,
        "status-report-req": "true",
    }


def test_send_sms_unicode(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(
        rest("/sms/json"), json={"message-count": "1", "messages": [sms_part("0A01")]}
    )

    send(provider, text="Привет 👋")

    form = form_of(the_request(mocked_responses))
    assert form["type"] == "unicode"
    assert form["text"] == "Привет 👋"


def test_send_sms_gsm_extension_characters_stay_text(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(
        rest("/sms/json"), json={"message-count": "1", "messages": [sms_part("0A01")]}
    )

    send(provider, text="Price: 5€ [approx] ~ {ok} Äß@£")

    assert form_of(the_request(mocked_responses))["type"] == "text"


def test_send_sms_multi_part(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(
        rest("/sms/json"),
        json={
            "message-count": "3",
            "messages": [sms_part("0A01"), sms_part("0A02"), sms_part("0A03")],
        },
    )

    result = send(provider, text="x" * 400)

    assert result.message_ids == ["0A01", "0A02", "0A03"]
    assert result.price == Decimal("0.09990000")


def test_send_sms_partial_failure_keeps_the_accepted_parts(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    mocked_responses.post(
        rest("/sms/json"),
        json={
            "message-count": "3",
            "messages": [
                sms_part("0A01"),
                sms_part("0A02"),
                sms_part("", status="1", **{"error-text": "Throttled"}),
            ],
        },
    )

    with pytest.raises(TransientProviderError) as caught:
        send(provider, text="x" * 400)

    assert caught.value.code == "1"
    assert caught.value.text == "Throttled"
    assert [part.message_id for part in caught.value.accepted_parts] == ["0A01", "0A02"]


@pytest.mark.parametrize(
    ("status", "text", "error_class"),
    [
        ("1", "Throttled", TransientProviderError),
        ("5", "Internal Error", TransientProviderError),
        ("2", "Missing to param", PermanentProviderError),
        ("3", "Invalid to param", PermanentProviderError),
        ("4", "Bad Credentials", PermanentProviderError),
        ("9", "Partner quota exceeded", PermanentProviderError),
        ("29", "Non-Whitelisted Destination", PermanentProviderError),
    ],
)
def test_send_sms_status_errors(
    provider: VonageProvider,
    mocked_responses: responses.RequestsMock,
    status: str,
    text: str,
    error_class: type[ProviderError],
) -> None:
    mocked_responses.post(
        rest("/sms/json"),
        json={"message-count": "1", "messages": [{"status": status, "error-text": text}]},
    )

    with pytest.raises(error_class) as caught:
        send(provider, text="Hello")

    assert type(caught.value) is error_class
    assert (caught.value.code, caught.value.text) == (status, text)
    assert caught.value.accepted_parts == ()


def test_send_sms_is_not_resent_when_the_connection_drops(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    # The SDK would re-send up to ten times on RemoteDisconnected: one SMS, ten deliveries.
    mocked_responses.post(
        rest("/sms/json"),
        body=requests.ConnectionError(
            RemoteDisconnected("Remote end closed connection without response")
        ),
    )

    with pytest.raises(TransientProviderError) as caught:
        send(provider, text="Hello")

    assert caught.value.code == "connection"
    assert len(mocked_responses.calls) == 1


def test_send_sms_refuses_a_client_ref_longer_than_vonage_allows(
    provider: VonageProvider, mocked_responses: responses.RequestsMock
) -> None:
    with pytest.raises(PermanentProviderError):
        send(provider, text="Hello", client_ref="x" * (CLIENT_REF_MAX_LENGTH + 1))
    assert len(mocked_responses.calls) == 0


# --- HTTP errors and timeouts, for every call ----------------------------------------------------

OPERATIONS: dict[str, tuple[str, str, Callable[[VonageProvider], object]]] = {
    "search": ("GET", rest("/number/search"), lambda p: p.search_numbers(country="GB")),
    "list_owned": ("GET", rest("/account/numbers"), lambda p: p.list_owned_numbers()),
    "buy": (
        "POST",
        rest("/number/buy"),
        lambda p: p.buy_number(country="GB", msisdn="+447700900000"),
    ),
    "configure": (
        "POST",
        rest("/number/update"),
        lambda p: p.configure_number(
            country="GB", msisdn="+447700900000", inbound_url="https://proxy.example.com/in/"
        ),
    ),
    "cancel": (
        "POST",
        rest("/number/cancel"),
        lambda p: p.cancel_number(country="GB", msisdn="+447700900000"),
    ),
    "insight": ("GET", api("/ni/basic/json"), lambda p: p.insight_basic(number="+447700900000")),
    "send": (
        "POST",
        rest("/sms/json"),
        lambda p: send(p, text="Hello"),
    ),
}

HTTP_ERRORS = [
    (
        HTTPStatus.UNAUTHORIZED,
        {"error-code": "401", "error-code-label": "authentication failed"},
        PermanentProviderError,
        "401",
    ),
    (HTTPStatus.FORBIDDEN, {"title": "Forbidden"}, PermanentProviderError, "403"),
    (HTTPStatus.TOO_MANY_REQUESTS, {"title": "Too Many Requests"}, TransientProviderError, "429"),
    (HTTPStatus.INTERNAL_SERVER_ERROR, None, TransientProviderError, "500"),
    (HTTPStatus.BAD_GATEWAY, None, TransientProviderError, "502"),
    (HTTPStatus.SERVICE_UNAVAILABLE, None, TransientProviderError, "503"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("status", "body", "error_class", "code"), HTTP_ERRORS)
def test_http_errors_are_typed(
    provider: VonageProvider,
    mocked_responses: responses.RequestsMock,
    operation: str,
    status: HTTPStatus,
    body: dict[str, str] | None,
    error_class: type[ProviderError],
    code: str,
) -> None:
    method, url, call = OPERATIONS[operation]
    if body is None:
        mocked_responses.add(method, url, status=status, body="upstream trouble")
    else:
        mocked_responses.add(method, url, status=status, json=body)

    with pytest.raises(error_class) as caught:
        call(provider)

    assert type(caught.value) is error_class
    assert caught.value.code == code
    assert caught.value.http_status == status
    assert caught.value.transient is error_class.transient
    assert_vonage_request(the_request(mocked_responses), method=method, url=url)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_http_420(
    provider: VonageProvider, mocked_responses: responses.RequestsMock, operation: str
) -> None:
    method, url, call = OPERATIONS[operation]
    mocked_responses.add(
        method, url, status=420, json={"error-code": "420", "error-code-label": "method failed"}
    )
    expected = {
        "buy": NumberUnavailableError,
        "configure": NumberNotOwnedError,
        "cancel": NumberNotOwnedError,
    }.get(operation, PermanentProviderError)

    with pytest.raises(expected) as caught:
        call(provider)

    assert type(caught.value) is expected
    assert (caught.value.code, caught.value.http_status) == ("420", 420)
    assert "method failed" in caught.value.text
    assert not caught.value.transient


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
        (requests.exceptions.ConnectionError("Connection refused"), "connection"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(
    provider: VonageProvider,
    mocked_responses: responses.RequestsMock,
    operation: str,
    failure: Exception,
    code: str,
) -> None:
    method, url, call = OPERATIONS[operation]
    mocked_responses.add(method, url, body=failure)

    with pytest.raises(TransientProviderError) as caught:
        call(provider)

    assert caught.value.code == code
    assert caught.value.transient
    assert_vonage_request(the_request(mocked_responses), method=method, url=url)


def test_an_integral_timeout_setting_reaches_requests(
    settings: Any, mocked_responses: responses.RequestsMock
) -> None:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = API_KEY
    settings.VONAGE_API_SECRET = API_SECRET
    settings.VONAGE_REST_HOST = "rest.nexmo.com"
    settings.VONAGE_TIMEOUT = 10.0
    mocked_responses.post("https://rest.nexmo.com/number/cancel", json=NUMBERS_OK)

    get_provider().cancel_number(country="GB", msisdn="+447700900000")

    assert the_request(mocked_responses).req_kwargs["timeout"] == 10
