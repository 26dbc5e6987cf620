"""Vonage's webhooks: inbound SMS and delivery receipts (DESIGN.md §8).

Both accept the three encodings a Vonage account can be set to (GET query, POST form, POST
JSON). The order of checks: another method answers 405; an empty request (Vonage's bare GET
when a number's webhook is configured) answers 200 and does nothing; then the signature,
whenever `VONAGE_SIGNATURE_SECRET` is set (401, nothing stored); then the payload (400 when
unusable); then one transaction of the service. Nothing here calls Vonage: forwards are queued
and sent by a dispatcher, so the answer comes well inside Vonage's ~15 s.

Answers are JSON: `{"status": "ok"}` for anything stored or deliberately ignored — the same
body whatever happened, so that a caller cannot probe which real number is in a conversation
on which proxy number — and `{"code", "detail"[, "fields"]}` on error, as in the API. A
well-formed request we do not act on (a receipt status we do not know, an overlong sender id)
is ignored with a warning rather than refused: Vonage retries anything but a 2xx for a day or
more, and a retry would not change our answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from smsproxy.common.connections import on_a_live_connection
from smsproxy.common.errors import ApplicationError
from smsproxy.common.metrics import INBOUND_WEBHOOKS, WEBHOOK_SECONDS
from smsproxy.common.privacy import mask_number
from smsproxy.gateway.signatures import (
    MalformedWebhookError,
    SignatureError,
    verify_signature,
    webhook_params,
)
from smsproxy.gateway.webhooks import WebhookIgnored, inbound_sms_parse, receipt_parse
from smsproxy.proxy.outbox.receipts import receipt_record
from smsproxy.proxy.services.inbound import inbound_receive

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The methods Vonage calls webhooks with (GET query, POST form or JSON).
_ALLOWED_METHODS = ("GET", "POST")


# The answer to anything stored or ignored: always the same bytes, so encoded once.
_OK_BODY = json.dumps({"status": "ok"}).encode()


def _ok() -> HttpResponse:
    return HttpResponse(_OK_BODY, content_type="application/json")


def webhook_error(
    status: HTTPStatus, code: str, detail: str, fields: dict[str, Any] | None = None
) -> JsonResponse:
    """An error answer of any of Vonage's webhooks (SMS and voice): the API's error shape."""
    body: dict[str, Any] = {"code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


def webhook_method_refused(request: HttpRequest, *, name: str) -> JsonResponse | None:
    """405 for a method Vonage never uses (SMS and voice webhooks); None for GET and POST."""
    if request.method in _ALLOWED_METHODS:
        return None
    logger.warning("Rejected %s webhook: method %s.", name, request.method)
    response = webhook_error(
        HTTPStatus.METHOD_NOT_ALLOWED,
        "method_not_allowed",
        f"Method {request.method} is not allowed; use {' or '.join(_ALLOWED_METHODS)}.",
    )
    response["Allow"] = ", ".join(_ALLOWED_METHODS)
    return response


def _webhook(
    request: HttpRequest, handle: Callable[[dict[str, str]], object], *, name: str
) -> HttpResponse:
    """The webhook's answer, timed into `smsproxy_webhook_duration_seconds` (one observe)."""
    started = time.perf_counter()
    status = int(HTTPStatus.INTERNAL_SERVER_ERROR)  # an exception: Django answers 500
    try:
        response = _webhook_answer(request, handle, name=name)
        status = response.status_code
        return response
    finally:
        WEBHOOK_SECONDS.labels(webhook=name, status=str(status)).observe(
            time.perf_counter() - started
        )


def _webhook_answer(
    request: HttpRequest, handle: Callable[[dict[str, str]], object], *, name: str
) -> HttpResponse:
    refused = webhook_method_refused(request, name=name)
    if refused is not None:
        return refused
    try:
        params = webhook_params(request)
    except MalformedWebhookError as error:
        return webhook_error(HTTPStatus.BAD_REQUEST, "malformed", str(error))
    if not params:
        return _ok()
    secret = settings.VONAGE_SIGNATURE_SECRET
    if secret:
        try:
            verify_signature(
                params,
                secret=secret,
                method=settings.VONAGE_SIGNATURE_METHOD,
                max_age=settings.VONAGE_SIGNATURE_MAX_AGE,
            )
        except SignatureError as error:
            logger.warning("Rejected %s webhook: %s (%s).", name, error.detail, error.reason)
            return webhook_error(HTTPStatus.UNAUTHORIZED, "invalid_signature", error.detail)
    try:
        handle_on_a_live_connection(handle, params)
    except WebhookIgnored as ignored:
        logger.warning("Ignored %s webhook: %s", name, ignored)
    except ApplicationError as error:
        logger.warning("Rejected %s webhook: %s", name, error.detail)
        return webhook_error(error.status, error.code, error.detail, error.fields)
    return _ok()


def handle_on_a_live_connection(handle: Callable[[dict[str, str]], T], params: dict[str, str]) -> T:
    """Run `handle`, once more on a new connection if the kept one turned out to be dead
    (`on_a_live_connection`).

    After a database restart each worker's first statement fails on a connection the server
    has dropped. Nothing was written (the first statement failed; the transaction rolled back),
    and a `messageId` is stored once whatever happens, so running the request again on a new
    connection is safe. If the database is really down, the second try fails too and the
    webhook answers 500, which Vonage retries.
    """
    return on_a_live_connection(lambda: handle(params), what="the webhook")


def _inbound(params: dict[str, str]) -> None:
    sms = inbound_sms_parse(params)
    result = inbound_receive(sms=sms)
    INBOUND_WEBHOOKS.labels(outcome=result.outcome).inc()
    logger.info(
        "Inbound SMS %s from %s to %s: %s.",
        sms.vonage_message_id,
        mask_number(sms.sender),
        sms.recipient,
        result.outcome,
        extra={"event": "inbound_sms", "outcome": str(result.outcome)},
    )


def _receipt(params: dict[str, str]) -> None:
    receipt_record(receipt=receipt_parse(params))


@csrf_exempt
def inbound_sms(request: HttpRequest) -> HttpResponse:
    return _webhook(request, _inbound, name="inbound-sms")


@csrf_exempt
def delivery_receipt(request: HttpRequest) -> HttpResponse:
    return _webhook(request, _receipt, name="delivery-receipt")
