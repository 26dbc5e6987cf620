"""`simulate_call`: the answer and event webhooks over HTTP to a live server, as from Vonage."""

from __future__ import annotations

from http import HTTPStatus
from io import StringIO
from typing import Any

import pytest
import requests
import responses
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from smsproxy.proxy.models import Message
from tests.proxy.fixtures import ALICE, ALICE_PROXY, BOB_PROXY, conversation_end, conversation_make

ANSWER = "https://proxy.example.com/webhooks/vonage/voice/answer/"


def simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate_call", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def voice_on(settings: Any) -> Any:
    settings.PROXY_VOICE = True
    settings.VONAGE_SIGNATURE_SECRET = ""
    return settings


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("secret", ["", "simulated-voice-secret-0123456789abcdef"])
def test_a_simulated_call_is_connected_masked_and_recorded(
    live_server: Any, voice_on: Any, api_client: APIClient, secret: str
) -> None:
    voice_on.VONAGE_SIGNATURE_SECRET = secret  # the live server checks the JWTs
    conversation = conversation_make()

    output = simulate(
        "--from", ALICE[1:], "--to", ALICE_PROXY, "--duration", "42", "--url", live_server.url
    )

    # Bob's number is masked in the console; he sees his own proxy number calling.
    assert f"connecting +44770090**** → proxy {BOB_PROXY}" in output
    assert output.count("HTTP 204") == 8
    call = Message.objects.get(direction=Message.Direction.CALL)
    assert (call.conversation, call.status, call.duration) == (conversation, "completed", 42)
    assert (call.sender, call.recipient) == (ALICE, ALICE_PROXY)
    assert call.caller_leg_uuid and call.callee_leg_uuid
    listed = api_client.get(f"/api/conversations/{conversation.public_id}/messages/")
    assert listed.status_code == HTTPStatus.OK
    assert [m["direction"] for m in listed.json()["results"]] == ["call"]


@pytest.mark.django_db(transaction=True)
def test_a_simulated_call_out_of_session_hears_the_talk(live_server: Any, voice_on: Any) -> None:
    conversation_end(conversation_make())

    output = simulate("--from", ALICE, "--to", ALICE_PROXY, "--url", live_server.url)

    assert "talk: This conversation has ended." in output
    assert "connecting" not in output
    call = Message.objects.get(direction=Message.Direction.CALL)
    assert (call.conversation, call.status, call.duration) == (None, "completed", 3)


@pytest.mark.django_db(transaction=True)
def test_an_unsigned_simulation_is_refused_by_a_signing_server(
    live_server: Any, voice_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server has a secret the command does not know: a clear error, not a traceback."""
    conversation_make()
    voice_on.VONAGE_SIGNATURE_SECRET = "server-secret-0123456789abcdef0123"
    monkeypatch.setattr(
        "smsproxy.proxy.management.commands.simulate_call.voice_signature_header",
        lambda **kwargs: "Bearer forged",
    )

    with pytest.raises(CommandError, match="HTTP 401"):
        simulate("--from", ALICE, "--to", ALICE_PROXY, "--url", live_server.url)
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "not a number", "--to", ALICE_PROXY], "--from 'not a number'"),
        (["--from", ALICE, "--to", "12"], "--to '12'"),
        (["--from", ALICE, "--to", ALICE_PROXY, "--duration", "-1"], "--duration"),
        (["--from", ALICE, "--to", ALICE_PROXY, "--timeout", "0"], "--timeout"),
        (["--from", ALICE, "--to", ALICE_PROXY, "--url", "ftp://x"], "not an http"),
    ],
)
def test_bad_options_are_command_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        simulate(*args)


def test_a_server_that_is_not_there_is_a_command_error(
    mocked_responses: responses.RequestsMock,
) -> None:
    mocked_responses.get(ANSWER, body=requests.ConnectionError("refused"))

    with pytest.raises(CommandError, match="Could not reach") as raised:
        simulate("--from", ALICE, "--to", ALICE_PROXY)
    assert "--url http://127.0.0.1:18400" in str(raised.value)


def test_an_answer_that_is_not_an_ncco_is_a_command_error(
    mocked_responses: responses.RequestsMock,
) -> None:
    mocked_responses.get(ANSWER, json={"status": "ok"})

    with pytest.raises(CommandError, match="NCCO is unusable"):
        simulate("--from", ALICE, "--to", ALICE_PROXY)


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        call_command("simulate_call", "--help")

    help_text = capsys.readouterr().out
    assert "answer webhook" in help_text and "--duration" in help_text
