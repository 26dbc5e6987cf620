"""Admin list cells: coloured status badges, truncated texts with the whole in the tooltip."""

from __future__ import annotations

from smsproxy.common.admin_display import muted, status_badge, truncated


def test_a_badge_is_coloured_by_meaning() -> None:
    delivered = status_badge("delivered", "Delivered")
    failed = status_badge("failed", "Failed")

    assert "Delivered</span>" in delivered
    assert "#1e6b34" in delivered  # green
    assert "#a3211a" in failed  # red
    assert "status-failed" in failed


def test_an_unknown_status_is_grey_and_escaped() -> None:
    badge = status_badge("odd", "<b>odd</b>")

    assert "#5f6368" in badge
    assert "&lt;b&gt;odd&lt;/b&gt;" in badge


def test_a_long_text_is_cut_with_the_whole_in_its_tooltip() -> None:
    text = "Running 5 minutes late, the traffic on the bridge is terrible"

    cell = truncated(text, 20)

    assert f'title="{text}"' in cell
    assert ">Running 5 minutes l…</span>" in cell
    assert truncated("short", 20) == "short"


def test_muted_text_is_escaped() -> None:
    assert "&lt;x&gt;" in muted("<x>")
