"""Vonage's voice webhooks: the answer URL (an NCCO) and the event URL (DESIGN.md §12).

The order of checks, as for the SMS webhooks: another method answers 405; then, whenever
`VONAGE_SIGNATURE_SECRET` is set, the signed-webhook JWT (401, nothing read or stored); then the
payload (400 `{"code", "detail"[, "fields"]}` when unusable); then the service.

The answer webhook answers 200 with an NCCO: `connect` for a caller with a live route, a short
`talk` for anyone else — the same answer whether the number called is ours or not, so that a
caller cannot probe which real number is in a conversation on which proxy number. The event
webhook answers 204 for anything recorded or deliberately ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from smsproxy.common.errors import ApplicationError
from smsproxy.common.privacy import mask_number
from smsproxy.gateway.signatures import MalformedWebhookError, SignatureError, webhook_params
from smsproxy.gateway.voice import call_answer_parse, call_event_parse, ncco_connect, ncco_talk
from smsproxy.gateway.voice_signatures import voice_signature_verify
from smsproxy.gateway.webhooks import WebhookIgnored
from smsproxy.proxy.services.calls import CALL_ENDED_TEXT, call_event_record, call_route
from smsproxy.proxy.webhooks import (
    handle_on_a_live_connection,
    webhook_error,
    webhook_method_refused,
)

logger = logging.getLogger(__name__)


def _voice_webhook(
    request: HttpRequest, handle: Callable[[dict[str, str]], HttpResponse], *, name: str
) -> HttpResponse:
    refused = webhook_method_refused(request, name=name)
    if refused is not None:
        return refused
    secret = settings.VONAGE_SIGNATURE_SECRET
    if secret:
        try:
            voice_signature_verify(
                authorization=request.headers.get("Authorization", ""),
                body=request.body,
                secret=secret,
            )
        except SignatureError as error:
            logger.warning("Rejected %s webhook: %s (%s).", name, error.detail, error.reason)
            return webhook_error(HTTPStatus.UNAUTHORIZED, "invalid_signature", error.detail)
    try:
        return handle_on_a_live_connection(handle, webhook_params(request))
    except MalformedWebhookError as error:
        return webhook_error(HTTPStatus.BAD_REQUEST, "malformed", str(error))
    except WebhookIgnored as ignored:
        logger.info("Ignored %s webhook: %s", name, ignored)
        return HttpResponse(status=HTTPStatus.NO_CONTENT)
    except ApplicationError as error:
        logger.warning("Rejected %s webhook: %s", name, error.detail)
        return webhook_error(error.status, error.code, error.detail, error.fields)


def _answer(params: dict[str, str]) -> HttpResponse:
    answer = call_answer_parse(params)
    connect = call_route(answer=answer)
    logger.info(
        "Call %s from %s to %s: %s.",
        answer.conversation_uuid,
        mask_number(answer.caller or "withheld"),
        answer.called,
        "connecting" if connect else "no live conversation",
    )
    if connect is None:
        return JsonResponse(ncco_talk(CALL_ENDED_TEXT), safe=False)
    return JsonResponse(
        ncco_connect(caller_id=connect.caller_id, callee=connect.callee), safe=False
    )


def _event(params: dict[str, str]) -> HttpResponse:
    call_event_record(event=call_event_parse(params))
    return HttpResponse(status=HTTPStatus.NO_CONTENT)


@csrf_exempt
def voice_answer(request: HttpRequest) -> HttpResponse:
    return _voice_webhook(request, _answer, name="voice-answer")


@csrf_exempt
def voice_event(request: HttpRequest) -> HttpResponse:
    return _voice_webhook(request, _event, name="voice-event")
