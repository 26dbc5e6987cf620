"""The admin dashboard's figures, their query budget, and the page that shows them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.utils import timezone

from smsproxy.proxy.dashboard import (
    CountryHeadroom,
    live_conversations_count,
    messages_per_hour,
    month_spend,
    outbox_figures_get,
    pool_headroom_get,
)
from smsproxy.proxy.models import Conversation, Message
from tests.factories import (
    ConversationFactory,
    MessageFactory,
    ParticipantFactory,
    VirtualNumberFactory,
)

pytestmark = pytest.mark.django_db


def _age(message: Message, *, created: timedelta, updated: timedelta | None = None) -> None:
    """Back-date a row (auto_now fields ignore what a factory passes)."""
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        created_at=now - created, updated_at=now - (updated if updated is not None else created)
    )


def test_live_conversations_counts_active_only():
    ConversationFactory.create_batch(2)
    ConversationFactory.create(
        status=Conversation.Status.CLOSED,
        closed_at=timezone.now(),
        close_reason=Conversation.CloseReason.API,
    )
    assert live_conversations_count() == 2


def test_outbox_figures():
    now = timezone.now()
    old = MessageFactory.create(status=Message.Status.QUEUED)
    _age(old, created=timedelta(minutes=7))
    MessageFactory.create(status=Message.Status.QUEUED)
    MessageFactory.create(status=Message.Status.FAILED)
    _age(
        MessageFactory.create(status=Message.Status.REJECTED), created=timedelta(hours=3)
    )  # too old
    MessageFactory.create(status=Message.Status.DELIVERED)
    MessageFactory.create(direction=Message.Direction.INBOUND, status=Message.Status.UNROUTED)
    _age(
        MessageFactory.create(direction=Message.Direction.INBOUND, status=Message.Status.UNROUTED),
        created=timedelta(hours=2),
    )

    figures = outbox_figures_get(now=now)

    assert figures.queued == 2
    assert figures.failed_last_hour == 1
    assert figures.unrouted_last_hour == 1
    age = figures.oldest_queued_age(now=now)
    assert age is not None
    assert 7 * 60 - 5 < age < 7 * 60 + 5


def test_outbox_figures_when_empty():
    figures = outbox_figures_get(now=timezone.now())
    assert figures.queued == 0
    assert figures.oldest_queued_at is None
    assert figures.oldest_queued_age(now=timezone.now()) is None


def test_pool_headroom_per_country():
    gb = VirtualNumberFactory.create_batch(3, country="GB")
    VirtualNumberFactory.create(country="GB", reserved=True)
    VirtualNumberFactory.create(country="GB", status="released", released_at=timezone.now())
    VirtualNumberFactory.create(msisdn="+15550100001", country="US")
    # One GB person in two live conversations (two numbers), another in one; a closed one
    # does not count.
    ParticipantFactory.create(real_number="+447700901500", proxy_number=gb[0])
    ParticipantFactory.create(real_number="+447700901500", proxy_number=gb[1])
    ParticipantFactory.create(real_number="+447700901501", proxy_number=gb[0])
    ParticipantFactory.create(real_number="+447700901501", proxy_number=gb[1], active=False)
    ParticipantFactory.create(real_number="+447700901501", proxy_number=gb[2], active=False)
    # A French person on a GB number: counted under their own country, which has no numbers.
    ParticipantFactory.create(real_number="+33612345678", country="FR", proxy_number=gb[2])

    assert pool_headroom_get() == [
        CountryHeadroom(country="FR", free_numbers=0, needed=1),
        CountryHeadroom(country="GB", free_numbers=3, needed=2),
        CountryHeadroom(country="US", free_numbers=1, needed=0),
    ]
    assert [row.headroom for row in pool_headroom_get()] == [-1, 1, 1]


def test_messages_per_hour_by_status():
    now = timezone.now().replace(minute=30)
    current = now.replace(minute=0, second=0, microsecond=0)
    MessageFactory.create_batch(2, status=Message.Status.DELIVERED)
    MessageFactory.create(status=Message.Status.FAILED)
    for message in Message.objects.all():
        Message.objects.filter(pk=message.pk).update(created_at=current + timedelta(minutes=5))
    three_hours_ago = MessageFactory.create(status=Message.Status.QUEUED)
    Message.objects.filter(pk=three_hours_ago.pk).update(
        created_at=current - timedelta(hours=3, minutes=-10)
    )
    too_old = MessageFactory.create(status=Message.Status.QUEUED)
    Message.objects.filter(pk=too_old.pk).update(created_at=current - timedelta(hours=24))

    bars = messages_per_hour(now=now)

    assert len(bars) == 24
    assert bars[-1].hour == current
    assert bars[0].hour == current - timedelta(hours=23)
    assert bars[-1].counts == {"delivered": 2, "failed": 1}
    assert bars[-1].total == 3
    assert bars[-4].counts == {"queued": 1}
    assert sum(bar.total for bar in bars) == 4


def test_month_spend_sums_this_months_prices():
    now = timezone.now()
    MessageFactory.create(status=Message.Status.DELIVERED, price=Decimal("0.04120"))
    MessageFactory.create(status=Message.Status.DELIVERED, price=Decimal("0.01000"))
    MessageFactory.create(status=Message.Status.QUEUED, price=None)
    last_month = MessageFactory.create(status=Message.Status.DELIVERED, price=Decimal("5"))
    Message.objects.filter(pk=last_month.pk).update(
        created_at=now.replace(day=1) - timedelta(days=1)
    )
    assert month_spend(now=now) == Decimal("0.05120")


def test_month_spend_without_prices_is_zero():
    assert month_spend(now=timezone.now()) == Decimal("0")


def test_dashboard_figures_take_a_fixed_number_of_queries(django_assert_max_num_queries):
    for index in range(5):
        number = VirtualNumberFactory.create(country="GB" if index % 2 else "US")
        ParticipantFactory.create(proxy_number=number)
        MessageFactory.create(status=Message.Status.QUEUED, price=Decimal("0.05"))
    now = timezone.now()
    with django_assert_max_num_queries(6):
        live_conversations_count()
        outbox_figures_get(now=now)
        pool_headroom_get()
        messages_per_hour(now=now)
        month_spend(now=now)


def test_admin_index_shows_the_dashboard(admin_client):
    number = VirtualNumberFactory.create()
    ParticipantFactory.create(proxy_number=number)
    MessageFactory.create(status=Message.Status.QUEUED)
    MessageFactory.create(status=Message.Status.FAILED, price=Decimal("1.25"))

    response = admin_client.get("/admin/")

    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert 'id="sms-dashboard"' in html
    assert '<dd id="figure-live-conversations">1</dd>' in html
    assert '<dd id="figure-outbox-depth">1</dd>' in html
    assert '<dd id="figure-failed">1</dd>' in html
    assert ">1.25</dd>" in html
    assert "sms-status-queued" in html
    assert "sms-status-failed" in html
    assert "<td>GB</td><td>1</td><td>1</td><td>0</td>" in html
    # The admin's own index is still there below it.
    assert 'id="content-main"' in html
    assert "proxy/dashboard.css" in html


def test_admin_index_dashboard_query_count_does_not_grow(
    admin_client, django_assert_max_num_queries
):
    admin_client.get("/admin/")  # warm the session and content types
    for _ in range(10):
        ParticipantFactory.create()
        MessageFactory.create(status=Message.Status.DELIVERED)
    with django_assert_max_num_queries(12):
        assert admin_client.get("/admin/").status_code == HTTPStatus.OK


def test_admin_index_with_no_data(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "No messages in the last 24 hours." in html
    assert "No numbers and no live conversations." in html
    assert '<dd id="figure-oldest-queued">—</dd>' in html


def test_sandbox_banner_on_every_admin_page(admin_client, settings):
    settings.SMS_PROVIDER = "sandbox"
    for url in ("/admin/", "/admin/proxy/message/", "/admin/numbers/virtualnumber/"):
        assert 'class="sandbox-banner"' in admin_client.get(url).content.decode(), url


def test_sandbox_banner_on_the_login_page(client, settings):
    settings.SMS_PROVIDER = "sandbox"
    assert 'class="sandbox-banner"' in client.get("/admin/login/").content.decode()


def test_no_sandbox_banner_on_vonage(admin_client, settings):
    settings.SMS_PROVIDER = "vonage"
    for url in ("/admin/", "/admin/proxy/message/"):
        assert "sandbox-banner" not in admin_client.get(url).content.decode().replace(
            "proxy/dashboard.css", ""
        ), url
