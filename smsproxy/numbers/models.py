"""The pool of proxy numbers rented from the SMS provider, and the jobs that rent them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE


class VirtualNumber(models.Model):
    """A number rented from Vonage (or the sandbox) that participants text and receive from."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RELEASED = "released", "Released"

    msisdn = models.CharField("number (E.164)", max_length=16, unique=True)
    country = models.CharField(max_length=2, db_index=True)
    number_type = models.CharField("type", max_length=32, default=DEFAULT_NUMBER_TYPE)
    # Comma-joined, sorted provider feature names: "SMS", "SMS,VOICE", ...
    features = models.CharField(max_length=64, default="SMS")
    monthly_cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    reserved = models.BooleanField(
        default=False, help_text="Reserved numbers are never picked for new conversations."
    )
    # How many participants flagged active use this number: the load that assignment ranks
    # candidates by (rule 3). Kept in the transactions that create, move and close
    # participants (smsproxy.proxy.services.conversations), because counting them per candidate
    # on every new conversation grows with the number of live conversations (bench/RESULTS.md).
    assigned_participants = models.PositiveIntegerField(default=0, editable=False)
    inbound_webhook_url = models.URLField("configured webhook", max_length=500, blank=True)
    configured_at = models.DateTimeField(null=True, blank=True)
    rented_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    provisioning_job = models.ForeignKey(
        "numbers.ProvisioningJob",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="numbers",
    )

    class Meta:
        ordering = ["msisdn"]
        constraints = [
            models.CheckConstraint(
                name="number_msisdn_e164",
                condition=models.Q(msisdn__regex=r"^\+[1-9][0-9]{6,14}$"),
            ),
            models.CheckConstraint(
                name="number_country_alpha2", condition=models.Q(country__regex=r"^[A-Z]{2}$")
            ),
            # A released number has a release time, and one with a release time is released.
            models.CheckConstraint(
                name="number_released_has_time",
                condition=(
                    models.Q(status="released", released_at__isnull=False)
                    | models.Q(status="active", released_at__isnull=True)
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.msisdn

    @property
    def feature_list(self) -> list[str]:
        return [feature for feature in self.features.split(",") if feature]


class ProvisioningJob(models.Model):
    """Work on the pool that runs off the request path, with its log and per-number outcomes.

    Two kinds: renting numbers ("Buy numbers", `provision_numbers`) and making the pool match
    the provider account ("Sync from Vonage", `sync_numbers`). Both start through
    `provisioning_job_start` and run on a Celery worker or the embedded worker.
    """

    class Kind(models.TextChoices):
        BUY = "buy", "Buy numbers"
        SYNC = "sync", "Sync from provider"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partially done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.BUY)
    # A sync job's country is empty when it syncs every country.
    country = models.CharField(max_length=2, blank=True)
    number_type = models.CharField("type", max_length=32, default=DEFAULT_NUMBER_TYPE)
    features = models.CharField(max_length=64, default="SMS")
    pattern = models.CharField(
        max_length=20, blank=True, help_text="Digits the number should contain, e.g. 7700."
    )
    # Numbers to rent; 0 for a sync job, which rents nothing.
    quantity = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    error = models.TextField(blank=True, help_text="Why the job ended short of its quantity.")
    # One entry per step: {"at": ISO time, "level": "info"|"error", "message": str}.
    log = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="job_quantity_positive",
                condition=models.Q(quantity__gt=0) | models.Q(kind="sync", quantity=0),
            ),
            models.CheckConstraint(
                name="job_country_alpha2",
                condition=models.Q(country__regex=r"^[A-Z]{2}$")
                | models.Q(kind="sync", country=""),
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.SYNC:
            return f"Job #{self.pk}: sync {self.country or 'all countries'}"
        return f"Job #{self.pk}: {self.quantity} x {self.country} {self.number_type}"

    def log_entry(self, message: str, *, level: str = "info") -> dict[str, Any]:
        entry = {"at": timezone.now().isoformat(), "level": level, "message": message}
        self.log.append(entry)
        return entry


class JobNumberOutcome(models.Model):
    """What a job did to one number: the rows the job page lists, in order."""

    class Outcome(models.TextChoices):
        BOUGHT = "bought", "Bought"
        CONFIGURED = "configured", "Configured"
        FAILED = "failed", "Failed"
        ADDED = "added", "Synced: added"
        UPDATED = "updated", "Synced: updated"
        UNCHANGED = "unchanged", "Synced: unchanged"
        RETIRED = "retired", "Synced: no longer rented, released"

    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="outcomes")
    msisdn = models.CharField("number (E.164)", max_length=16)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.msisdn}: {self.get_outcome_display()}"
