"""API error bodies: every error is `{"code", "detail"}`, validation errors add `fields`."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, pagination, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from smsproxy.common.errors import ApplicationError

# DRF's own exception codes are kept, with two made clearer for API clients.
_CODE_OVERRIDES = {
    "parse_error": "malformed_request",
    "invalid": "validation_error",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = {"code": exc.code, "detail": exc.detail}
        if exc.fields:
            body["fields"] = exc.fields
        refusal = Response(body, status=int(exc.status))
        if exc.logged:
            refusal._has_been_logged = True  # type: ignore[attr-defined]  # Django's flag
        return refusal

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response

    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "code": "validation_error",
            "detail": "The request is not valid: see `fields`.",
            "fields": fields,
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response

    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    response.data = {"code": _CODE_OVERRIDES.get(code, code), "detail": str(exc.detail)}
    return response


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error body: a machine-readable `code`, a human `detail`, per-field `fields`."""

    code = serializers.CharField()
    detail = serializers.CharField()

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "fields" cannot be a class attribute: it would shadow Serializer.fields.
        fields = super().get_fields()
        fields["fields"] = serializers.DictField(
            child=serializers.JSONField(),
            required=False,
            help_text="Validation errors: messages per request field.",
        )
        return fields


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's page-number pagination (DESIGN.md §7), whose OpenAPI examples read like a real
    first page (one page, no next) instead of DRF's `count: 123` on api.example.org."""

    def get_paginated_response_schema(self, schema: Any) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        properties = paginated["properties"]
        properties["count"]["example"] = 1
        properties["next"]["example"] = None
        properties["previous"]["example"] = None
        return paginated
