"""Admin for conversations (with participants and messages inline) and for messages."""

from smsproxy.proxy.admin import conversations, messages  # noqa: F401
