"""`manage.py simulate_call --from N --to N [--duration S] [--url BASE]`: play a call as Vonage."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from smsproxy.common.address import unreachable_hint
from smsproxy.common.phone import phone_parse
from smsproxy.gateway.voice import (
    CallLeg,
    CallStatus,
    NccoOutcome,
    call_answer_params,
    call_event_payload,
    ncco_outcome,
)
from smsproxy.gateway.voice_signatures import voice_signature_header

# How long the out-of-session caller listens to the talk before the call ends.
TALK_SECONDS = 3


class Command(BaseCommand):
    help = (
        "Play a phone call to a proxy number exactly as Vonage would: request the answer "
        "webhook (GET, as Vonage does by default), print what its NCCO does with the call, then "
        "post the call's event webhooks (started, ringing, answered, completed with the "
        "duration) so that the call shows in the conversation. Requests are signed (a JWT) "
        "when VONAGE_SIGNATURE_SECRET is set. The server must be running (make run)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="caller",
            required=True,
            help="The caller's real number (E.164, national or Vonage's digits).",
        )
        parser.add_argument(
            "--to",
            dest="called",
            required=True,
            help="The proxy number called (E.164, national or Vonage's digits).",
        )
        parser.add_argument(
            "--duration",
            type=int,
            default=30,
            help="Seconds the connected call lasts (default 30).",
        )
        parser.add_argument(
            "--url",
            default="",
            help="The base URL of smsproxy (default: PUBLIC_BASE_URL).",
        )
        parser.add_argument(
            "--timeout", type=float, default=15.0, help="Seconds to wait for each answer."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["duration"] < 0:
            raise CommandError("--duration must be zero or more seconds.")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        self.timeout = options["timeout"]
        caller = _e164(options["caller"], "--from")
        called = _e164(options["called"], "--to")
        base = (options["url"] or settings.PUBLIC_BASE_URL).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError(f"--url {base!r} is not an http(s) URL.")
        answer_url = base + reverse("vonage-voice-answer")
        self.event_url = base + reverse("vonage-voice-event")
        caller_leg = str(uuid.uuid4())
        self.conversation_uuid = f"CON-{uuid.uuid4()}"
        signed = " (signed)" if settings.VONAGE_SIGNATURE_SECRET else ""
        self.stdout.write(f"Call {caller} → {called}: GET {answer_url}{signed}")

        outcome = self._answer(answer_url, caller=caller, called=called, leg=caller_leg)
        caller_events = [CallStatus.STARTED, CallStatus.RINGING, CallStatus.ANSWERED]
        for status in caller_events:
            self._event(status, CallLeg.CALLER, caller_leg, caller, called)
        if outcome.talk:
            self.stdout.write(f"talk: {outcome.talk}")
            self._event(
                CallStatus.COMPLETED, CallLeg.CALLER, caller_leg, caller, called, TALK_SECONDS
            )
        else:
            self.stdout.write(
                f"connecting {_masked(outcome.connect_to)} → proxy {outcome.caller_id}"
            )
            callee_leg = str(uuid.uuid4())
            route = (outcome.caller_id, outcome.connect_to)
            for status in caller_events:
                self._event(status, CallLeg.CALLEE, callee_leg, *route)
            duration = options["duration"]
            self._event(CallStatus.COMPLETED, CallLeg.CALLEE, callee_leg, *route, duration)
            self._event(
                CallStatus.COMPLETED, CallLeg.CALLER, caller_leg, caller, called, duration + 5
            )
        self.stdout.write(self.style.SUCCESS(f"Call {self.conversation_uuid} recorded."))

    def _answer(self, url: str, *, caller: str, called: str, leg: str) -> NccoOutcome:
        params = call_answer_params(
            caller=caller, called=called, uuid=leg, conversation_uuid=self.conversation_uuid
        )
        request = requests.Request("GET", url, params=params).prepare()
        response = self._send(request)
        try:
            return ncco_outcome(response.json())
        except ValueError as error:
            raise CommandError(f"The answer webhook's NCCO is unusable: {error}") from None

    def _event(
        self,
        status: CallStatus,
        leg: CallLeg,
        leg_uuid: str,
        sender: str,
        recipient: str,
        duration: int | None = None,
    ) -> None:
        body = call_event_payload(
            uuid=leg_uuid,
            conversation_uuid=self.conversation_uuid,
            status=status,
            leg=leg,
            sender=sender,
            recipient=recipient,
            timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            duration=duration,
        )
        data = json.dumps(body).encode()
        request = requests.Request(
            "POST", self.event_url, data=data, headers={"Content-Type": "application/json"}
        ).prepare()
        response = self._send(request)
        self.stdout.write(f"  event {leg.value} {status.value}: HTTP {response.status_code}")

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        secret = settings.VONAGE_SIGNATURE_SECRET
        if secret:
            body = request.body or b""
            request.headers["Authorization"] = voice_signature_header(
                body=body if isinstance(body, bytes) else body.encode(),
                secret=secret,
                api_key=settings.VONAGE_API_KEY or "sandbox",
            )
        try:
            with requests.Session() as session:
                response = session.send(request, timeout=self.timeout)
        except requests.ConnectionError as error:
            raise CommandError(
                unreachable_hint(str(request.url), error, example="http://127.0.0.1:18400")
            ) from None
        except requests.RequestException as error:
            raise CommandError(f"Could not reach {request.url}: {error}") from None
        if not 200 <= response.status_code < 300:
            raise CommandError(
                f"{request.method} {request.url} answered HTTP {response.status_code}: "
                f"{response.text.strip()[:500]}"
            )
        return response


def _masked(number: str) -> str:
    """A callee's number with its last four digits hidden, for the console."""
    return f"{number[:-4]}****" if len(number) > 4 else number


def _e164(value: str, option: str) -> str:
    """E.164, national (PROXY_DEFAULT_COUNTRY) or Vonage's digits → E.164."""
    parsed = phone_parse(number=value)
    if parsed is None:
        raise CommandError(f"{option} {value!r} is not a possible phone number.")
    return parsed.e164
