"""smsproxy: private SMS conversations over rented proxy numbers."""

from __future__ import annotations

from typing import Any


# The Celery app is created on first use, not with Django: importing Celery and kombu costs
# every management command a few hundred milliseconds, and only a process with
# CELERY_BROKER_URL set needs it (the dispatcher publishing a task; `celery -A smsproxy`, which
# finds `smsproxy.celery.app` itself). Creating it opens no connection either way.
def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from .celery import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ("celery_app",)
