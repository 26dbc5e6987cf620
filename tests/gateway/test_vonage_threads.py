"""The Vonage provider used from several threads (run_outbox's senders): each thread sends
through an SDK client of its own, built with the same options, and keeps it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any, TypeVar

import pytest
import requests
import responses

from smsproxy.gateway.base import TransientProviderError
from smsproxy.gateway.vonage import VonageProvider
from tests.gateway.test_vonage import (
    TIMEOUT,
    assert_vonage_request,
    provider,  # noqa: F401 (fixture)
    rest,
    send,
    sms_part,
)

T = TypeVar("T")


def in_thread(work: Callable[[], T]) -> T:
    """`work`'s result, run on a thread of its own (its exception re-raised here)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # re-raised on the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_each_thread_sends_through_a_client_of_its_own_and_keeps_it(
    provider: VonageProvider,  # noqa: F811
    mocked_responses: responses.RequestsMock,
) -> None:
    mocked_responses.post(
        rest("/sms/json"), json={"message-count": "1", "messages": [sms_part("A")]}
    )

    def send_twice() -> tuple[Any, Any]:
        first = provider._client
        send(provider, text="Hello")
        return first, provider._client

    main_first, main_again = send_twice()
    other_first, other_again = in_thread(send_twice)

    assert main_first is main_again
    assert other_first is other_again
    assert other_first is not main_first
    # Both threads' sends went out alike: Basic auth, form encoded, the timeout.
    assert len(mocked_responses.calls) == 2
    for call in mocked_responses.calls:
        assert_vonage_request(call.request, method="POST", url=rest("/sms/json"))
    assert other_first.http_client.http_client_options.timeout == TIMEOUT


def test_a_dropped_connection_is_not_resent_from_another_thread_either(
    provider: VonageProvider,  # noqa: F811
    mocked_responses: responses.RequestsMock,
) -> None:
    mocked_responses.post(
        rest("/sms/json"),
        body=requests.ConnectionError(
            RemoteDisconnected("Remote end closed connection without response")
        ),
    )

    with pytest.raises(TransientProviderError) as caught:
        in_thread(lambda: send(provider, text="Hello"))

    assert caught.value.code == "connection"
    assert len(mocked_responses.calls) == 1


def test_no_threads_client_carries_the_signature_secret(
    provider: VonageProvider,  # noqa: F811
    settings: Any,
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "signing-secret"

    auth = in_thread(lambda: provider._http.auth)

    assert auth._signature_secret is None
