"""API authentication besides tokens: staff logged in to the admin use the API from a browser.

The marketplace backend authenticates with `Authorization: Token` (DESIGN.md §7). Staff who are
logged in to the admin can also use DRF's browsable API and the "Try it out" of /api/docs/ with
their session. Only staff: a session of any other user is ignored (the request is then
unauthenticated, 401). Unsafe methods need the CSRF token, as every session-authenticated form
does, so another site cannot make a staff member's browser open or close conversations.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request


class StaffSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        user = getattr(request._request, "user", None)
        if user is None or not user.is_active or not user.is_staff:
            return None
        self.enforce_csrf(request)
        return (user, None)
