"""Celery tasks of the number pool (used only when CELERY_BROKER_URL is set)."""

from __future__ import annotations

import logging

from celery import shared_task

# The project's app first: Celery is no longer loaded with Django, and a shared task used
# (`.delay`, patched in a test) before the app exists would bind to Celery's unconfigured default.
import smsproxy.celery  # noqa: F401
from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import ProvisioningJob
from smsproxy.numbers.services.provisioning import provisioning_job_run

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def provisioning_job_run_task(job_id: int) -> str:
    """Run a provisioning job started in the admin; returns the status it ended with."""
    job = ProvisioningJob.objects.get(pk=job_id)
    try:
        return provisioning_job_run(job=job, pending_only=True).status
    except ApplicationError as exc:
        # A redelivered task for a job another worker runs or already finished: nothing to do.
        logger.info("Provisioning job %s not run: %s", job_id, exc.detail)
        return exc.code
