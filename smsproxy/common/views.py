from __future__ import annotations

from http import HTTPStatus

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers a query, 503 otherwise (for load balancers and probes)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return JsonResponse(
            {"status": "unavailable", "database": "error"}, status=HTTPStatus.SERVICE_UNAVAILABLE
        )
    return JsonResponse({"status": "ok", "database": "ok"})


# Machine clients (the marketplace backend, Vonage) get JSON errors with a `code`, like every
# other API error; people in the admin keep Django's HTML pages.
_MACHINE_PREFIXES = ("/api/", "/webhooks/")


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(_MACHINE_PREFIXES):
        return JsonResponse(
            {"code": "not_found", "detail": "No such endpoint or object."},
            status=HTTPStatus.NOT_FOUND,
        )
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(_MACHINE_PREFIXES):
        return JsonResponse(
            {"code": "server_error", "detail": "Internal server error."},
            status=HTTPStatus.INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
