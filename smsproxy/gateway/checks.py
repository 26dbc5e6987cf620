"""`manage.py check`: the Vonage application that masked calls need (DESIGN §12).

With PROXY_VOICE on and the Vonage provider, numbers are linked to VONAGE_APPLICATION_ID and the
application is identified by its private key, VONAGE_PRIVATE_KEY: either the PEM text itself
(it starts with `-----BEGIN`) or the path of a PEM file. A wrong key fails only when Vonage is
asked, so the check says which of the two readings was used and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.core.checks import Error

_PEM_START = "-----BEGIN"
_HINT = (
    "Create an application with Voice in the Vonage dashboard (answer URL "
    "PUBLIC_BASE_URL/webhooks/vonage/voice/answer/, event URL "
    "PUBLIC_BASE_URL/webhooks/vonage/voice/event/), then set VONAGE_APPLICATION_ID to its id "
    "and VONAGE_PRIVATE_KEY to its private key (the PEM text, or the path of the downloaded "
    "private.key file) — or switch PROXY_VOICE off."
)


def check_voice_application(app_configs: Any, **kwargs: Any) -> list[Error]:
    if not (settings.PROXY_VOICE and settings.SMS_PROVIDER == "vonage"):
        return []
    errors = []
    if not settings.VONAGE_APPLICATION_ID.strip():
        errors.append(
            Error(
                "PROXY_VOICE is on but VONAGE_APPLICATION_ID is empty: numbers cannot be "
                "linked to an application, so calls to them are not answered.",
                hint=_HINT,
                id="smsproxy.E101",
            )
        )
    problem = private_key_problem(settings.VONAGE_PRIVATE_KEY)
    if problem:
        errors.append(Error(problem, hint=_HINT, id="smsproxy.E102"))
    return errors


def private_key_problem(value: str) -> str:
    """What is wrong with VONAGE_PRIVATE_KEY ("" when it holds a usable private key)."""
    value = value.strip()
    if not value:
        return "PROXY_VOICE is on but VONAGE_PRIVATE_KEY is empty."
    if value.startswith(_PEM_START):
        # An environment variable often carries the PEM's line breaks as a literal "\n".
        pem = value.replace("\\n", "\n")
        reading = "VONAGE_PRIVATE_KEY is read as a PEM string (it starts with -----BEGIN)"
    else:
        path = Path(value).expanduser()
        reading = f"VONAGE_PRIVATE_KEY is read as a file path ({path})"
        try:
            pem = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return f"{reading}, and no such file exists."
        except (OSError, UnicodeDecodeError) as error:
            return f"{reading}, and the file cannot be read: {error}."
    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        return f"{reading}, but it is not an unencrypted PEM private key: {error}"
    return ""
