"""Suite-wide fixtures, and the guard that forbids any network connection but to localhost."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import responses as responses_lib
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


class NetworkAccessForbidden(RuntimeError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    host = address[0]
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_local(address):
        raise NetworkAccessForbidden(f"Tests may not open network connections (to {address!r}).")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_local(address):
        raise NetworkAccessForbidden(f"Tests may not open network connections (to {address!r}).")
    return _real_connect_ex(self, address)


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    if not _is_local(address):
        raise NetworkAccessForbidden(f"Tests may not open network connections (to {address!r}).")
    return _real_create_connection(address, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.create_connection = _guarded_create_connection


@pytest.fixture
def mocked_responses() -> Iterator[responses_lib.RequestsMock]:
    """Vonage faked at the HTTP boundary; any request not registered fails the test."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def api_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="marketplace", password="unused-pw-1")


@pytest.fixture
def api_client(api_user: Any) -> APIClient:
    token = Token.objects.create(user=api_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
