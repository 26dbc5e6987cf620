"""smsproxy: private SMS conversations over rented proxy numbers."""

# Load the Celery app with Django so that `shared_task`s bind to it. Creating the app opens no
# connection: only publishing a task does, and that happens only when CELERY_BROKER_URL is set.
from .celery import app as celery_app

__all__ = ("celery_app",)
