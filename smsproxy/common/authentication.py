"""The API's authentication: tokens for the marketplace, sessions for logged-in staff.

`CachedSqlTokenAuthentication`: DRF's `TokenAuthentication` finds the token with
`select_related("user").get(key=...)`, which the ORM builds and compiles on every request: on
the busiest API call (opening a conversation) that cost more CPU than the database's work. This
subclass runs the same lookup — the token joined to its user, one statement — with its SQL built
once, and answers exactly as DRF does (same errors, same `(user, token)`). It is the first
statement of a token-authenticated request: on a kept connection the database dropped, it runs
again on a new one (`on_a_live_connection`) instead of the request answering 500.

`StaffSessionAuthentication`: staff who are logged in to the admin can also use DRF's browsable
API and the "Try it out" of /api/docs/ with their session. Only staff: a session of any other
user is ignored (the request is then unauthenticated, 401). Unsafe methods need the CSRF token,
as every session-authenticated form does, so another site cannot make a staff member's browser
open or close conversations.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

from smsproxy.common.connections import on_a_live_connection
from smsproxy.common.rows import ModelColumns, model_columns


class CachedSqlTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's TokenAuthentication (and shown so in the schema)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        sql, token_columns, user_columns = _token_lookup(connection.vendor)
        row = on_a_live_connection(lambda: _row(sql, key), what="the token lookup")
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_columns.instance(row[: token_columns.width])
        user = user_columns.instance(row[token_columns.width :])
        token.user = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (user, token)


def _row(sql: str, key: str) -> tuple[Any, ...] | None:
    """The token's row joined to its user's, or None."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


@cache
def _token_lookup(vendor: str) -> tuple[str, ModelColumns[Token], ModelColumns[Any]]:
    user_model = get_user_model()
    quote = connection.ops.quote_name
    token_columns = model_columns(Token, "t")
    user_columns = model_columns(user_model, "u")
    user_key = quote(str(Token._meta.get_field("user").column))
    user_pk = quote(str(user_model._meta.pk.column))
    # Only the models' own table and column names are interpolated; the key is a parameter.
    sql = (
        f"SELECT {token_columns.sql}, {user_columns.sql} "  # noqa: S608
        f"FROM {quote(Token._meta.db_table)} t "
        f"JOIN {quote(user_model._meta.db_table)} u ON u.{user_pk} = t.{user_key} "
        f"WHERE t.{quote(str(Token._meta.pk.column))} = %s"
    )
    return sql, token_columns, user_columns


class StaffSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        user = getattr(request._request, "user", None)
        if user is None or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        return (user, None)
