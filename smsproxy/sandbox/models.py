"""State of the sandbox provider.

The web process and the delivery worker are separate processes, so what the sandbox "Vonage
account" rents and sends lives in the database, not in memory.
"""

from __future__ import annotations

from django.db import models


class SandboxNumber(models.Model):
    """A fictitious number the sandbox account rents or once rented (one row per number)."""

    msisdn = models.CharField(max_length=16, unique=True, help_text="E.164 with '+'.")
    country = models.CharField(max_length=2)
    type = models.CharField(max_length=32)
    features = models.CharField(max_length=32, help_text='Comma list, e.g. "SMS,VOICE".')
    inbound_url = models.URLField(max_length=500, blank=True)
    application_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The Vonage application the number's calls go to (linked with PROXY_VOICE).",
    )
    rented_at = models.DateTimeField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["msisdn"]
        verbose_name = "sandbox number"

    def __str__(self) -> str:
        return self.msisdn

    @property
    def is_rented(self) -> bool:
        return self.cancelled_at is None


class SandboxMessage(models.Model):
    """An SMS the sandbox "sent": stored so that a person (and a test) can follow it."""

    sender = models.CharField(max_length=16)
    recipient = models.CharField(max_length=16)
    text = models.TextField()
    encoding = models.CharField(max_length=8, help_text="text (GSM-7) or unicode (UCS-2).")
    client_ref = models.CharField(max_length=40, blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    message_ids = models.JSONField(default=list, help_text="One id per part, in order.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "sandbox message"

    def __str__(self) -> str:
        return f"{self.sender} → {self.recipient}: {self.text[:40]}"
