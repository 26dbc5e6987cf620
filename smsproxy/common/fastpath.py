"""Vonage's webhooks answered past the middleware they never use.

A webhook is called by Vonage, not by a browser: it is `csrf_exempt`, and it reads no session,
no user, no flash message and no static file. Going through SessionMiddleware, CsrfViewMiddleware,
AuthenticationMiddleware, MessageMiddleware and WhiteNoise costs every webhook a little CPU for
nothing (each wraps the request and looks at the response). `WebhookFastPathMiddleware`, placed
right after SecurityMiddleware, sends a request whose path is exactly one of the webhooks' URLs
(`WEBHOOK_URL_NAMES`) through the middleware that does change a webhook's answer — CommonMiddleware
(Content-Length, the disallowed user agents) and XFrameOptionsMiddleware (the header) — and then
straight to its view. Everything else (the admin, the API, the docs, any other path, a webhook URL
without its final slash) takes the whole MIDDLEWARE chain as before. The answer of a webhook is the
same either way, headers included; an exception in the view is answered as Django answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import ResolverMatch, get_script_prefix, get_urlconf, resolve, reverse
from django.utils.module_loading import import_string

# The URLs (by name) that take the fast path: Vonage's SMS and voice webhooks.
WEBHOOK_URL_NAMES = (
    "vonage-inbound-sms",
    "vonage-delivery-receipt",
    "vonage-voice-answer",
    "vonage-voice-event",
)
# The middleware of MIDDLEWARE that a webhook still goes through, outermost first.
WEBHOOK_MIDDLEWARE = (
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)

Handler = Callable[[HttpRequest], HttpResponseBase]


class WebhookFastPathMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        handler: Any = convert_exception_to_response(self._view_call)
        for path in reversed(WEBHOOK_MIDDLEWARE):
            handler = convert_exception_to_response(import_string(path)(handler))
        self.webhook_response: Handler = handler
        # Per URL conf: each webhook's path_info and its resolved view (found on first use; the
        # paths are constant, so one resolution serves every request).
        self._matches: dict[str | None, dict[str, ResolverMatch]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info in self._webhook_matches():
            return self.webhook_response(request)
        return self.get_response(request)

    def _webhook_matches(self) -> dict[str, ResolverMatch]:
        urlconf = get_urlconf()
        matches = self._matches.get(urlconf)
        if matches is None:
            prefix = get_script_prefix()  # reverse() puts the script name first; path_info has none
            paths = [
                "/" + reverse(name, urlconf=urlconf)[len(prefix) :] for name in WEBHOOK_URL_NAMES
            ]
            matches = {path: resolve(path, urlconf=urlconf) for path in paths}
            self._matches[urlconf] = matches
        return matches

    def _view_call(self, request: HttpRequest) -> HttpResponseBase:
        """What Django's handler does between the middleware and the view, for a plain view."""
        match = self._webhook_matches()[request.path_info]
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if response is None:
            raise ValueError(
                f"The view {match.func.__module__}.{match.func.__name__} returned None."
            )
        return response
