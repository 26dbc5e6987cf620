"""Staff users for the admin tests: who may do what, and who sees real numbers."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.test import Client

SUPPORT_GROUP = "Support (read-only)"


def staff_login(
    client: Client, django_user_model: Any, *, codenames: list[str], support: bool = False
) -> Any:
    """Log `client` in as a new staff user with these permissions (and the support group's)."""
    user = django_user_model.objects.create_user(
        f"staff-{django_user_model.objects.count()}", password="pw-for-tests-1", is_staff=True
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    if support:
        user.groups.add(Group.objects.get(name=SUPPORT_GROUP))
    client.force_login(user)
    return user


# Staff who may act on conversations and messages but not see real numbers in full.
OPERATOR = [
    "view_conversation",
    "change_conversation",
    "view_participant",
    "view_message",
    "change_message",
    "view_event",
    "change_event",
]
VIEWER = ["view_conversation", "view_participant", "view_message", "view_event"]
