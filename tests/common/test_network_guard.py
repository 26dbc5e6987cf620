"""The suite-wide guard (tests/conftest.py): no test may reach anything but localhost."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

FORBIDDEN = "Tests may not open network connections"
# Addresses reserved for documentation (RFC 5737, RFC 3849): literals, so no DNS lookup happens.
REMOTE_V4 = ("192.0.2.10", 443)
REMOTE_V6 = ("2001:db8::10", 443)


@pytest.fixture
def local_server() -> Iterator[tuple[str, int]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()
    server.close()


def test_socket_connect_to_a_remote_host_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match=FORBIDDEN):
        sock.settimeout(1)  # without the guard: a timeout error, and the test fails
        sock.connect(REMOTE_V4)


def test_connect_ex_to_a_remote_host_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match=FORBIDDEN):
        sock.settimeout(1)
        sock.connect_ex(REMOTE_V4)


def test_create_connection_to_a_remote_host_is_refused() -> None:
    with pytest.raises(RuntimeError, match=FORBIDDEN):
        socket.create_connection(REMOTE_V6, timeout=1)


def test_an_http_client_cannot_get_out() -> None:
    # requests/urllib3 (the Vonage SDK's transport) must not swallow the guard's error.
    with pytest.raises(RuntimeError, match=FORBIDDEN):
        requests.get(f"https://{REMOTE_V4[0]}/", timeout=1)


def test_localhost_is_allowed(local_server: tuple[str, int]) -> None:
    with socket.create_connection(local_server, timeout=1):
        pass
    with socket.socket() as sock:
        sock.connect(local_server)
    with socket.create_connection(("localhost", local_server[1]), timeout=1):
        pass
