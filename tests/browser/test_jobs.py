"""Buying numbers in the admin: the request returns at once, the worker rents them, and the
job's page follows it to the end by itself."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from tests.browser.conftest import Browsing
from tests.browser.scenario import worker_run_once

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-pw-2"


def test_staff_buy_numbers_and_watch_the_job_finish(
    browsing: Browsing, django_user_model: Any
) -> None:
    django_user_model.objects.create_superuser("admin", password=PASSWORD)
    browsing.log_in("admin", PASSWORD)
    page = browsing.page

    browsing.open(reverse("admin:numbers_virtualnumber_changelist"))
    page.get_by_role("link", name="Buy numbers").click()
    page.get_by_label("Country").fill("GB")
    page.get_by_label("Quantity").fill("3")
    browsing.screenshot("buy-numbers")
    page.get_by_role("button", name="Buy numbers").click()

    # The request only recorded the job: nothing is rented until the worker runs it.
    status = page.locator(".field-status .readonly")
    expect(status).to_have_text("Pending")
    expect(page.locator(".messagelist")).to_contain_text("waiting for the delivery worker")
    assert VirtualNumber.objects.count() == 0
    browsing.screenshot("job-pending")

    # The embedded worker's pass; the page, left open, shows the end without a reload.
    worker_run_once()
    job = ProvisioningJob.objects.get()
    assert job.status == ProvisioningJob.Status.SUCCEEDED
    expect(status).to_have_text("Succeeded")
    numbers = page.locator(".field-rented_numbers .readonly div")
    expect(numbers).to_have_count(3)
    expect(numbers.first).to_contain_text("configured")
    browsing.screenshot("job-finished")

    browsing.open(reverse("admin:numbers_virtualnumber_changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    browsing.screenshot("numbers")
