"""Releasing numbers follows one rule in the admin and in `release_numbers` (README).

Already released numbers are skipped; numbers in live use refuse the whole release unless it is
forced; a forced release names and closes those conversations; a provider failure on one number
does not stop the others. Each case runs through both entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.admin.models import CHANGE
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation
from tests.factories import ParticipantFactory, VirtualNumberFactory

from .admin.conftest import CHANGELIST, action, history
from .conftest import SERVER_ERROR, FakeVonage, rent_sandbox_numbers

pytestmark = pytest.mark.django_db

# (succeeded, what the staff member or operator was told)
Release = Callable[[list[VirtualNumber], bool], tuple[bool, str]]


def _by_admin(client: Client) -> Release:
    def release(numbers: list[VirtualNumber], force: bool) -> tuple[bool, str]:
        extra = {"force": "on"} if force else {}
        response = action(client, "release", numbers, post="yes", **extra)
        shown = [(m.level, m.message) for m in response.context["messages"]]
        ok = not any(level == messages.ERROR for level, _ in shown) and any(
            level == messages.SUCCESS for level, _ in shown
        )
        return ok, " ".join(text for _, text in shown)

    return release


def _by_command(numbers: list[VirtualNumber], force: bool) -> tuple[bool, str]:
    out = StringIO()
    args = [number.msisdn for number in numbers] + (["--force"] if force else [])
    try:
        call_command("release_numbers", *args, stdout=out)
    except CommandError as exc:
        return False, f"{out.getvalue()} {exc}"
    return True, out.getvalue()


@pytest.fixture(params=["admin", "command"])
def release(request: pytest.FixtureRequest, admin_client: Client) -> Release:
    return _by_admin(admin_client) if request.param == "admin" else _by_command


def _status(*numbers: VirtualNumber) -> list[str]:
    return [VirtualNumber.objects.get(pk=number.pk).status for number in numbers]


def test_idle_numbers_are_released(release: Release) -> None:
    first, second = rent_sandbox_numbers(2)

    ok, said = release([first, second], False)

    assert ok and "Released 2 number(s)." in said
    assert _status(first, second) == ["released", "released"]


def test_one_number_in_live_use_refuses_the_whole_release(release: Release) -> None:
    busy, idle = rent_sandbox_numbers(2)
    participant = ParticipantFactory.create(proxy_number=busy, name="Alice")
    ref = participant.conversation.reference

    ok, said = release([idle, busy], False)

    assert not ok
    assert f"In live conversations: {busy.msisdn} (1 live participant(s): {ref} (Alice))" in said
    assert "Nothing was released" in said
    assert _status(busy, idle) == ["active", "active"]


def test_a_forced_release_closes_and_names_the_conversations(release: Release) -> None:
    busy, idle = rent_sandbox_numbers(2)
    participant = ParticipantFactory.create(proxy_number=busy, name="Alice")
    ParticipantFactory.create(conversation=participant.conversation, name="Bob", proxy_number=busy)
    ref = participant.conversation.reference

    ok, said = release([busy, idle], True)

    assert ok and f"{ref} (Alice ↔ Bob)" in said
    assert _status(busy, idle) == ["released", "released"]
    participant.conversation.refresh_from_db()
    assert participant.conversation.status == Conversation.Status.CLOSED
    assert participant.conversation.close_reason == "staff"


def test_already_released_numbers_are_skipped(release: Release) -> None:
    (idle,) = rent_sandbox_numbers(1)
    gone = VirtualNumberFactory.create(
        msisdn="+447700900999", status="released", released_at=timezone.now()
    )

    ok, said = release([gone, idle], False)

    assert ok and "already released" in said
    assert _status(idle) == ["released"]


def test_a_provider_failure_on_one_number_does_not_stop_the_others(
    release: Release, vonage: FakeVonage
) -> None:
    failing = VirtualNumberFactory.create(msisdn="+447700900101")
    other = VirtualNumberFactory.create(msisdn="+447700900102")
    vonage.rent("447700900101")
    vonage.rent("447700900102")
    vonage.fail("/number/cancel", "447700900101", SERVER_ERROR)

    ok, said = release([failing, other], False)

    assert not ok and "Vonage still rents it" in said
    # Both left the pool: the cancelled one for good, the failing one until a sync.
    assert _status(failing, other) == ["released", "released"]
    assert "447700900102" not in vonage.owned


# --- Admin only: the confirmation page and the history -----------------------------------------


def test_the_confirmation_names_the_conversations_a_release_would_close(
    admin_client: Client,
) -> None:
    busy, idle = rent_sandbox_numbers(2)
    participant = ParticipantFactory.create(proxy_number=busy, name="Alice")
    ParticipantFactory.create(conversation=participant.conversation, name="Bob", proxy_number=busy)
    conversation: Any = participant.conversation

    page = admin_client.post(
        CHANGELIST, {"action": "release", "_selected_action": [busy.pk, idle.pk]}
    )

    content = page.content.decode()
    assert f'would close <a href="/admin/proxy/conversation/{conversation.pk}/change/">' in content
    assert f"{conversation.reference}</a> (Alice ↔ Bob)" in content
    assert "nothing is released" in content
    assert _status(busy, idle) == ["active", "active"]


def test_the_release_history_is_old_to_new_and_names_what_was_closed(
    admin_client: Client,
) -> None:
    busy, idle = rent_sandbox_numbers(2)
    participant = ParticipantFactory.create(proxy_number=busy, name="Alice")
    ref = participant.conversation.reference

    action(admin_client, "release", [busy, idle], post="yes", force="on")

    assert history(idle) == [(CHANGE, "Status: active → released.")]
    assert history(busy) == [
        (
            CHANGE,
            "Status: active → released. Forced: it served 1 participant(s) of live "
            f"conversations, closed with reason staff: {ref} (Alice).",
        )
    ]


def test_the_command_writes_no_admin_history() -> None:
    (idle,) = rent_sandbox_numbers(1)
    call_command("release_numbers", idle.msisdn, stdout=StringIO())
    assert history(idle) == []
