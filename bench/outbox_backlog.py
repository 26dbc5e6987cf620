"""The backlog of bench/throttling.py: the pool, the queued rows, the settings of the workers."""

from __future__ import annotations

import os
import random
from collections import Counter

from bench.fake_sms import FakeSms

ACCOUNT_RATE = 30  # Vonage's default: 30 API requests a second per API key
GB_SENDERS = 30
US_SENDERS = 10  # long numbers, 1 SMS a second each


def senders() -> tuple[list[str], list[str]]:
    gb = [f"+{447700900100 + index}" for index in range(GB_SENDERS)]
    us = [f"+{15550100100 + index}" for index in range(US_SENDERS)]
    return gb, us


def product_env(*, database: str, fake: FakeSms) -> dict[str, str]:
    """Production settings as an operator of this account sets them, Vonage being the fake."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "VONAGE_", "PROXY_", "SMS_", "SANDBOX_", "API_", "CELERY_", "DATABASE_")
        )
        and key not in {"PUBLIC_BASE_URL", "LOG_LEVEL", "REQUESTS_CA_BUNDLE"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "smsproxy.settings",
            "DJANGO_READ_DOT_ENV": "0",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
            "DATABASE_URL": database,
            "PUBLIC_BASE_URL": "https://proxy.example.com",
            "SMS_PROVIDER": "vonage",
            "VONAGE_API_KEY": "benchkey",
            "VONAGE_API_SECRET": "bench-api-secret",
            "VONAGE_REST_HOST": fake.host,
            "REQUESTS_CA_BUNDLE": str(fake.ca_file),
            "SMS_RATE_LIMIT": str(fake.account_rate),
            "SMS_RATE_LIMIT_PER_SENDER": "1",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def backlog_write(count: int, *, seed: int) -> list[int]:
    """`count` queued outbound SMS, senders drawn at random from the pool; their ids."""
    from smsproxy.proxy.models import Message, MessagePart

    MessagePart.objects.all().delete()
    Message.objects.all().delete()
    rng = random.Random(seed)
    gb, us = senders()
    pool = gb + us
    Message.objects.bulk_create(
        (
            Message(
                direction=Message.Direction.OUTBOUND,
                purpose=Message.Purpose.CONVERSATION,
                status=Message.Status.QUEUED,
                sender=rng.choice(pool),
                recipient=f"+4475{index:08d}",
                text=f"Your courier is 5 minutes away (order {index}).",
            )
            for index in range(count)
        ),
        batch_size=2000,
    )
    return list(Message.objects.order_by("pk").values_list("pk", flat=True))


def pool_write() -> None:
    from django.utils import timezone

    from smsproxy.numbers.models import VirtualNumber

    gb, us = senders()
    now = timezone.now()
    VirtualNumber.objects.bulk_create(
        VirtualNumber(
            msisdn=msisdn,
            country="GB" if msisdn.startswith("+44") else "US",
            features="SMS",
            configured_at=now,
            rented_at=now,
        )
        for msisdn in gb + us
    )


def statuses() -> Counter[str]:
    from django.db.models import Count

    from smsproxy.proxy.models import Message

    return Counter(
        dict(
            Message.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
        )
    )


def allowed_rate(ids: list[int], *, account_rate: int) -> float:
    """What a perfect scheduler achieves on this backlog: the account's rate, unless one US
    number carries more than one second's worth of it."""
    from smsproxy.proxy.models import Message

    _gb, us = senders()
    per_us = Counter(Message.objects.filter(sender__in=us).values_list("sender", flat=True))
    busiest = max(per_us.values(), default=0)
    return len(ids) / max(len(ids) / account_rate, float(busiest))
