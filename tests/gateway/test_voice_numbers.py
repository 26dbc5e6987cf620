"""Numbers linked to the Vonage application for calls (PROXY_VOICE), and the system check that
explains a missing application id or key."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command

from smsproxy.gateway import get_provider
from smsproxy.gateway.checks import check_voice_application
from smsproxy.numbers.models import VirtualNumber
from smsproxy.sandbox.models import SandboxNumber
from smsproxy.sandbox.provider import SANDBOX_APPLICATION_ID
from tests.gateway.test_vonage import NUMBERS_OK, form_of, provider, rest  # noqa: F401
from tests.numbers.conftest import FakeVonage, rent_sandbox_numbers

APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
INBOUND = "https://proxy.example.com/webhooks/vonage/inbound-sms/"


@pytest.mark.parametrize(("voice", "expected"), [(True, {"app_id": APPLICATION_ID}), (False, {})])
def test_configuring_a_number_links_it_to_the_application_with_voice_on(
    provider: Any,  # noqa: F811
    settings: Any,
    mocked_responses: responses.RequestsMock,
    voice: bool,
    expected: dict[str, str],
) -> None:
    settings.PROXY_VOICE = voice
    settings.VONAGE_APPLICATION_ID = APPLICATION_ID
    mocked_responses.post(rest("/number/update"), json=NUMBERS_OK)

    # The settings changed after the fixture built the provider: it is rebuilt.
    get_provider().configure_number(country="GB", msisdn="+447700900000", inbound_url=INBOUND)

    [call] = mocked_responses.calls
    assert form_of(call.request) == {
        "country": "GB",
        "msisdn": "447700900000",
        "moHttpUrl": INBOUND,
        **expected,
    }


@pytest.mark.django_db
def test_provisioning_with_voice_on_links_every_number_bought(
    settings: Any, mocked_responses: responses.RequestsMock
) -> None:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "test-secret-1"
    settings.PROXY_VOICE = True
    settings.VONAGE_APPLICATION_ID = APPLICATION_ID
    fake = FakeVonage()
    fake.install(mocked_responses)
    fake.offer("447700900010", "447700900011")

    call_command("provision_numbers", "--country", "GB", "--count", "2", stdout=StringIO())

    updates = fake.calls("/number/update")
    assert sorted(update["msisdn"] for update in updates) == ["447700900010", "447700900011"]
    assert {update.get("app_id") for update in updates} == {APPLICATION_ID}


@pytest.mark.django_db
@pytest.mark.parametrize("application_id", [APPLICATION_ID, ""])
def test_the_sandbox_records_the_link(settings: Any, application_id: str) -> None:
    [number] = rent_sandbox_numbers(1)
    assert SandboxNumber.objects.get(msisdn=number.msisdn).application_id == ""
    settings.PROXY_VOICE = True
    settings.VONAGE_APPLICATION_ID = application_id

    call_command("configure_numbers", "--all", stdout=StringIO())

    rented = SandboxNumber.objects.get(msisdn=number.msisdn)
    assert rented.application_id == (application_id or SANDBOX_APPLICATION_ID)
    assert VirtualNumber.objects.get(pk=number.pk).inbound_webhook_url == INBOUND

    get_provider().cancel_number(country="GB", msisdn=number.msisdn)
    assert SandboxNumber.objects.get(msisdn=number.msisdn).application_id == ""


# --- the system check ----------------------------------------------------------------------------


@pytest.fixture
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def vonage_voice(settings: Any) -> Any:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "test-secret-1"
    settings.PROXY_VOICE = True
    settings.VONAGE_APPLICATION_ID = APPLICATION_ID
    return settings


def messages() -> list[tuple[str, str]]:
    return [(error.id or "", error.msg) for error in check_voice_application(None)]


def test_a_complete_voice_configuration_passes(vonage_voice: Any, pem: str, tmp_path: Path) -> None:
    vonage_voice.VONAGE_PRIVATE_KEY = pem
    assert messages() == []
    # As an environment variable often carries it: one line, "\n" for the breaks.
    vonage_voice.VONAGE_PRIVATE_KEY = pem.replace("\n", "\\n")
    assert messages() == []
    key_file = tmp_path / "private.key"
    key_file.write_text(pem)
    vonage_voice.VONAGE_PRIVATE_KEY = str(key_file)
    assert messages() == []


def test_voice_off_or_the_sandbox_needs_nothing(settings: Any) -> None:
    settings.PROXY_VOICE = False
    settings.SMS_PROVIDER = "vonage"
    assert messages() == []
    settings.PROXY_VOICE = True
    settings.SMS_PROVIDER = "sandbox"
    assert messages() == []


def test_a_missing_application_id_and_key_are_explained(vonage_voice: Any) -> None:
    vonage_voice.VONAGE_APPLICATION_ID = ""
    vonage_voice.VONAGE_PRIVATE_KEY = ""

    [(first_id, first), (second_id, second)] = messages()

    assert first_id == "smsproxy.E101" and "VONAGE_APPLICATION_ID is empty" in first
    assert second_id == "smsproxy.E102" and "VONAGE_PRIVATE_KEY is empty" in second


def test_a_bad_pem_string_is_named_as_a_pem_string(vonage_voice: Any) -> None:
    vonage_voice.VONAGE_PRIVATE_KEY = (
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"
    )

    [(error_id, message)] = messages()

    assert error_id == "smsproxy.E102"
    assert "read as a PEM string" in message and "not an unencrypted PEM private key" in message


def test_a_missing_key_file_is_named_as_a_file_path(vonage_voice: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    vonage_voice.VONAGE_PRIVATE_KEY = str(missing)

    [(_, message)] = messages()

    assert "read as a file path" in message and str(missing) in message
    assert "no such file" in message


def test_a_key_file_without_a_key_is_named_as_a_file_path(
    vonage_voice: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "private.key"
    key_file.write_text("application id, not a key")
    vonage_voice.VONAGE_PRIVATE_KEY = str(key_file)

    [(_, message)] = messages()

    assert "read as a file path" in message and "not an unencrypted PEM private key" in message


def test_manage_py_check_reports_it(vonage_voice: Any) -> None:
    from django.core.management.base import SystemCheckError

    vonage_voice.VONAGE_APPLICATION_ID = ""
    vonage_voice.VONAGE_PRIVATE_KEY = "-----BEGIN nonsense"

    with pytest.raises(SystemCheckError, match=r"smsproxy\.E101"):
        call_command("check", stdout=StringIO(), stderr=StringIO())
