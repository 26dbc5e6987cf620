from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
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


# The OpenAPI views are imported on their first request, not with the URL conf: drf-spectacular's
# schema generator costs every management command (their system checks load the URL conf) a
# few hundred milliseconds of imports.
@csrf_exempt
def api_schema(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    from drf_spectacular.views import SpectacularAPIView

    response: HttpResponse = SpectacularAPIView.as_view()(request, *args, **kwargs)
    return response


@csrf_exempt
def api_docs(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    from drf_spectacular.views import SpectacularSwaggerView

    response: HttpResponse = SpectacularSwaggerView.as_view(url_name="api-schema")(
        request, *args, **kwargs
    )
    return response


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
