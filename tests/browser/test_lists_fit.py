"""Issue 14 item 4: the four lists staff use most show every column at 1400 px, without
scrolling sideways (the list's own box scrolls when its table is wider than the page)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from tests.browser.conftest import Browsing
from tests.browser.scenario import conversation_with_failed_forward, worker_run_once

# No serialized rollback: these tests need nothing the migrations wrote (the Support group), and
# restoring it after test_jobs' flush would clash with the content types Django recreated.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-pw-1"

LISTS = [
    "admin:numbers_virtualnumber_changelist",
    "admin:numbers_provisioningjob_changelist",
    "admin:proxy_conversation_changelist",
    "admin:proxy_message_changelist",
]

# How much wider than its visible box the results table is (0 when it fits).
OVERFLOW_JS = """() => {
    const box = document.querySelector('#changelist .results');
    return box ? box.scrollWidth - box.clientWidth : -1;
}"""


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", password=PASSWORD)


@pytest.mark.parametrize("name", LISTS)
def test_a_list_shows_every_column_at_1400_px(browsing: Browsing, staff: Any, name: str) -> None:
    conversation_with_failed_forward()  # numbers, a conversation, its messages, a job
    worker_run_once()
    browsing.log_in("admin", PASSWORD)
    browsing.open(reverse(name))
    overflow = browsing.page.evaluate(OVERFLOW_JS)
    assert overflow == 0, f"{name}: the table is {overflow} px wider than the page shows"
