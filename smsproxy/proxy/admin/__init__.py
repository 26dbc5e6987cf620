"""Admin for conversations (with participants and messages inline), messages and events."""

from smsproxy.proxy.admin import conversations, events, messages  # noqa: F401
