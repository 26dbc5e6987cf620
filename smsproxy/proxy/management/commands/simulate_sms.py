"""`manage.py simulate_sms --from N --to N TEXT [--url URL]`: play Vonage's inbound-SMS webhook."""

from __future__ import annotations

import secrets
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsproxy.common.address import unreachable_hint
from smsproxy.common.phone import phone_parse
from smsproxy.gateway.webhooks import inbound_sms_params, webhook_sign_as_configured
from smsproxy.numbers.selectors import inbound_webhook_url

ENCODINGS = ("form", "get", "json")


class Command(BaseCommand):
    help = (
        "Send an inbound-SMS webhook to smsproxy exactly as Vonage would: a real HTTP request "
        "(POST form by default) with a fresh message id, signed when VONAGE_SIGNATURE_SECRET is "
        "set. For demos and the sandbox: text a proxy number 'from' a participant's phone. "
        "The server must be running (make run)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="sender",
            required=True,
            help="The sender's real number (E.164, national or Vonage's digits).",
        )
        parser.add_argument(
            "--to",
            dest="recipient",
            required=True,
            help="The proxy number texted (E.164, national or Vonage's digits).",
        )
        parser.add_argument("text", nargs="+", help="The text of the SMS.")
        parser.add_argument(
            "--url",
            default="",
            help="The inbound-SMS webhook URL "
            "(default: PUBLIC_BASE_URL + /webhooks/vonage/inbound-sms/).",
        )
        parser.add_argument(
            "--encoding",
            choices=ENCODINGS,
            default="form",
            help="How Vonage's account is set to send webhooks: POST form (default), GET "
            "query or POST JSON.",
        )
        parser.add_argument(
            "--timeout", type=float, default=15.0, help="Seconds to wait for the answer."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        sender = self._e164(options["sender"], "--from")
        recipient = self._e164(options["recipient"], "--to")
        text = " ".join(options["text"])
        url = options["url"] or inbound_webhook_url()
        message_id = f"SIM{secrets.token_hex(7).upper()}"
        params = webhook_sign_as_configured(
            inbound_sms_params(sender=sender, recipient=recipient, text=text, message_id=message_id)
        )
        signed = " (signed)" if settings.VONAGE_SIGNATURE_SECRET else ""
        self.stdout.write(
            f"{options['encoding'].upper()} {url}{signed}: {sender} → {recipient} "
            f"{message_id}: {text}"
        )
        response = self._send(url, params, encoding=options["encoding"], timeout=options["timeout"])
        body = response.text.strip()
        if not 200 <= response.status_code < 300:
            raise CommandError(f"The webhook answered HTTP {response.status_code}: {body}")
        self.stdout.write(self.style.SUCCESS(f"HTTP {response.status_code} {body}"))

    def _e164(self, value: str, option: str) -> str:
        """E.164, national (PROXY_DEFAULT_COUNTRY) or Vonage's digits → E.164."""
        parsed = phone_parse(number=value)
        if parsed is None:
            raise CommandError(f"{option} {value!r} is not a possible phone number.")
        return parsed.e164

    def _send(
        self, url: str, params: dict[str, str], *, encoding: str, timeout: float
    ) -> requests.Response:
        try:
            if encoding == "get":
                return requests.get(url, params=params, timeout=timeout)
            if encoding == "json":
                return requests.post(url, json=params, timeout=timeout)
            return requests.post(url, data=params, timeout=timeout)
        except requests.ConnectionError as error:
            raise CommandError(
                unreachable_hint(
                    url, error, example="http://127.0.0.1:18400/webhooks/vonage/inbound-sms/"
                )
            ) from None
        except requests.RequestException as error:
            raise CommandError(f"Could not reach {url}: {error}") from None
