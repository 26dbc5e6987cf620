"""The confirmation page every staff action shows before it changes anything."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse


def confirmation_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    title: str,
    verb: str,
    cancel_url: str,
    paragraphs: Iterable[str] = (),
    original: Model | None = None,
    items: Iterable[str] = (),
    items_title: str = "",
    skipped: Iterable[str] = (),
    skipped_title: str = "",
    hidden: Iterable[tuple[str, Any]] = (),
    confirm_label: str = "Confirm",
) -> TemplateResponse:
    """A page saying what `verb` will do, with Confirm (posting `hidden` back) and a way back.

    `confirm_label` names the button when it must say more than "Confirm" (and still start so).
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": model_admin.opts,
        "original": original,
        "verb": verb,
        "paragraphs": list(paragraphs),
        "items": list(items),
        "items_title": items_title,
        "skipped": list(skipped),
        "skipped_title": skipped_title,
        "hidden": list(hidden),
        "cancel_url": cancel_url,
        "confirm_label": confirm_label,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/proxy/confirm.html", context)
