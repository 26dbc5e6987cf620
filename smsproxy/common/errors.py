"""The one application error type services raise; the API maps it to a status and a `code`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ApplicationError(Exception):
    """A refusal a caller can act on: `code` is machine-readable, `detail` is for people."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST
    # Set by a service that logged the refusal with its details: the API then keeps Django
    # from logging a second, bare line ("Service Unavailable: /api/...") for the same event.
    logged: bool = False

    def __init__(
        self,
        detail: str,
        *,
        code: str,
        status: HTTPStatus | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        if status is not None:
            self.status = status
        self.fields = fields or {}
