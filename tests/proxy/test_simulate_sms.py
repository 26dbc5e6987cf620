"""`simulate_sms`: a real HTTP webhook, to a live server or to a faked one."""

from __future__ import annotations

import json
from io import StringIO
from urllib.parse import parse_qs

import pytest
import responses
from django.core.management import CommandError, call_command

from smsproxy.gateway.signatures import verify_signature
from smsproxy.proxy.models import Message
from tests.proxy.fixtures import ALICE, ALICE_PROXY, BOB, BOB_PROXY, INBOUND_URL, conversation_make

DEFAULT_URL = "https://proxy.example.com/webhooks/vonage/inbound-sms/"


def simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate_sms", *args, stdout=out)
    return out.getvalue()


def form_of(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {key: values[0] for key, values in parse_qs(text).items()}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("encoding", ["form", "get", "json"])
def test_a_simulated_text_is_forwarded_by_the_running_server(live_server, encoding: str) -> None:
    conversation_make()

    output = simulate(
        "--from",
        ALICE,
        "--to",
        ALICE_PROXY,
        "Hello",
        "from",
        "Alice",
        "--url",
        live_server.url + INBOUND_URL,
        "--encoding",
        encoding,
    )

    assert "HTTP 200" in output
    assert '{"status": "ok"}' in output
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert (forward.sender, forward.recipient, forward.text) == (BOB_PROXY, BOB, "Hello from Alice")


@pytest.mark.django_db(transaction=True)
def test_a_signed_simulation_passes_the_servers_signature_check(live_server, settings) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "simulated-secret"
    settings.VONAGE_SIGNATURE_METHOD = "sha512"
    conversation_make()

    output = simulate(
        "--from", ALICE, "--to", ALICE_PROXY, "signed", "--url", live_server.url + INBOUND_URL
    )

    assert "(signed)" in output
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


def test_the_default_url_is_the_public_base_url(mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.add(responses.POST, DEFAULT_URL, json={"status": "unrouted"})

    simulate("--from", "07700 901001", "--to", ALICE_PROXY, "Привет")

    form = form_of(mocked_responses.calls[0])
    assert (form["msisdn"], form["to"]) == ("447700901001", "447700900100")
    assert form["type"] == "unicode"
    assert form["text"] == "Привет"
    assert form["keyword"] == "ПРИВЕТ"
    assert form["messageId"].startswith("SIM")
    assert "sig" not in form


@pytest.mark.parametrize(
    "given,sent",
    [
        ("+447700901001", "447700901001"),
        ("447700901001", "447700901001"),
        ("07700 901001", "447700901001"),
        ("15550100123", "15550100123"),
        ("+1 555 010 0123", "15550100123"),
    ],
)
def test_numbers_in_any_usual_form(
    mocked_responses: responses.RequestsMock, given: str, sent: str
) -> None:
    mocked_responses.add(responses.POST, DEFAULT_URL, json={"status": "ok"})

    simulate("--from", given, "--to", ALICE_PROXY, "hi")

    assert form_of(mocked_responses.calls[0])["msisdn"] == sent


def test_every_simulation_has_a_fresh_message_id(mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.add(responses.POST, DEFAULT_URL, json={"status": "routed"})

    simulate("--from", ALICE, "--to", ALICE_PROXY, "one")
    simulate("--from", ALICE, "--to", ALICE_PROXY, "one")

    ids = {form_of(call)["messageId"] for call in mocked_responses.calls}
    assert len(ids) == 2


def test_the_webhook_is_signed_when_a_secret_is_set(
    settings, mocked_responses: responses.RequestsMock
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "simulated-secret"
    mocked_responses.add(responses.POST, DEFAULT_URL, json={"status": "routed"})

    simulate("--from", ALICE, "--to", ALICE_PROXY, "signed text")

    form = form_of(mocked_responses.calls[0])
    verify_signature(
        form, secret="simulated-secret", method=settings.VONAGE_SIGNATURE_METHOD, max_age=60
    )


def test_a_json_webhook(mocked_responses: responses.RequestsMock) -> None:
    mocked_responses.add(responses.POST, DEFAULT_URL, json={"status": "routed"})

    simulate("--from", ALICE, "--to", ALICE_PROXY, "as json", "--encoding", "json")

    body = json.loads(mocked_responses.calls[0].request.body or b"")
    assert body["text"] == "as json"


@pytest.mark.parametrize("status", [401, 400, 500])
def test_a_refusal_is_a_command_error(
    mocked_responses: responses.RequestsMock, status: int
) -> None:
    mocked_responses.add(responses.POST, DEFAULT_URL, status=status, json={"code": "nope"})

    with pytest.raises(CommandError, match=f"HTTP {status}"):
        simulate("--from", ALICE, "--to", ALICE_PROXY, "hello")


def test_an_unreachable_server_is_a_command_error_saying_how_to_point_elsewhere() -> None:
    with pytest.raises(CommandError, match="Could not reach") as raised:
        simulate(
            "--from",
            ALICE,
            "--to",
            ALICE_PROXY,
            "hello",
            "--url",
            "http://127.0.0.1:9/x/",
            "--timeout",
            "2",
        )
    assert "--url http://127.0.0.1:18400/webhooks/vonage/inbound-sms/" in str(raised.value)
    assert "PUBLIC_BASE_URL" in str(raised.value)


@pytest.mark.parametrize("option,value", [("--from", "not a number"), ("--to", "12")])
def test_a_bad_number_is_a_command_error(option: str, value: str) -> None:
    numbers = {"--from": ALICE, "--to": ALICE_PROXY, option: value}

    with pytest.raises(CommandError, match=option):
        simulate("--from", numbers["--from"], "--to", numbers["--to"], "hello")


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_a_timeout_must_be_positive(timeout: str) -> None:
    with pytest.raises(CommandError, match="--timeout"):
        simulate("--from", ALICE, "--to", ALICE_PROXY, "hello", "--timeout", timeout)
