"""The sandbox is an app of its own, installed only where it is the provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import modify_settings, override_settings

from smsproxy.gateway import get_provider

ROOT = Path(__file__).resolve().parents[2]


def installed_apps(**environment: str) -> list[str]:
    """INSTALLED_APPS of the production settings module, read in a fresh interpreter."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VONAGE_", "SMS_", "SANDBOX_"))
    }
    env.update({"DJANGO_READ_DOT_ENV": "0", "DJANGO_DEBUG": "1", **environment})
    output = subprocess.run(
        [sys.executable, "-c", "from smsproxy import settings; print(*settings.INSTALLED_APPS)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return output.split()


def test_a_vonage_deployment_has_no_sandbox_app() -> None:
    apps = installed_apps(SMS_PROVIDER="vonage", VONAGE_API_KEY="key", VONAGE_API_SECRET="secret")

    assert "smsproxy.gateway" in apps
    assert "smsproxy.sandbox" not in apps


def test_a_sandbox_deployment_installs_it() -> None:
    assert "smsproxy.sandbox" in installed_apps(SMS_PROVIDER="sandbox")


@override_settings(SMS_PROVIDER="sandbox")
@modify_settings(INSTALLED_APPS={"remove": "smsproxy.sandbox"})
def test_the_sandbox_provider_needs_its_app() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"smsproxy\.sandbox"):
        get_provider()
