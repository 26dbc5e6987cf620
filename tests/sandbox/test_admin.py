"""Read-only admin pages of the sandbox account."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest

from smsproxy.sandbox.provider import SandboxProvider

pytestmark = pytest.mark.django_db


def test_admin_pages_show_the_sandbox_state(sandbox: SandboxProvider, admin_client: Any) -> None:
    sandbox.buy_number(country="GB", msisdn="+447700900009")
    sandbox.send_sms(
        sender="+447700900009",
        recipient="+447700901234",
        text="Seen in the admin",
        client_ref="",
        callback_url="",
    )

    numbers = admin_client.get("/admin/sandbox/sandboxnumber/")
    messages = admin_client.get("/admin/sandbox/sandboxmessage/?q=admin")
    added = admin_client.get("/admin/sandbox/sandboxmessage/add/")

    assert numbers.status_code == HTTPStatus.OK
    assert "+447700900009" in numbers.content.decode()
    assert messages.status_code == HTTPStatus.OK
    assert "Seen in the admin" in messages.content.decode()
    assert added.status_code == HTTPStatus.FORBIDDEN
