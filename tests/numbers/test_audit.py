"""Staff actions on the pool write the admin history old → new in the service's transaction."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry

from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services import rental
from smsproxy.numbers.services.rental import number_release, number_reserve, number_unreserve
from tests.factories import VirtualNumberFactory

from .admin.conftest import history
from .conftest import rent_sandbox_numbers

pytestmark = pytest.mark.django_db


def test_reserve_and_unreserve_by_staff_are_in_the_history(admin_user: Any) -> None:
    number = VirtualNumberFactory.create()

    number_reserve(number=number, actor=admin_user)
    number_reserve(number=number, actor=admin_user)  # no change: no entry
    number_unreserve(number=number, actor=admin_user)

    assert history(number) == [(CHANGE, "Reserved: no → yes."), (CHANGE, "Reserved: yes → no.")]
    assert set(LogEntry.objects.values_list("user_id", flat=True)) == {admin_user.pk}


def test_without_a_user_nothing_is_written(admin_user: Any) -> None:
    number = VirtualNumberFactory.create()
    number_reserve(number=number)
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("change", ["release", "reserve"])
def test_the_history_is_written_in_the_transaction_of_the_change(
    admin_user: Any, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    (number,) = rent_sandbox_numbers(1)

    def broken_log(**kwargs: Any) -> None:
        raise RuntimeError("the history could not be written")

    monkeypatch.setattr(rental, "audit_change", broken_log)

    with pytest.raises(RuntimeError):
        if change == "release":
            number_release(number=number, actor=admin_user)
        else:
            number_reserve(number=number, actor=admin_user)

    # The change rolled back with the history: never one without the other.
    number.refresh_from_db()
    assert (number.status, number.reserved) == (VirtualNumber.Status.ACTIVE, False)
