"""Close and Reopen buttons on the conversation page, each behind a confirmation page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.models import Conversation
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.conversations import conversation_close
from smsproxy.proxy.services.reopen import conversation_reopen


def staff_close(*, conversation: Conversation, now: datetime) -> tuple[Conversation, str]:
    """Close `conversation` for staff; the closed conversation and its history message."""
    was = "active" if conversation_is_live(conversation=conversation, now=now) else "expired"
    conversation = conversation_close(
        conversation=conversation, reason=Conversation.CloseReason.STAFF, now=now
    )
    return conversation, (
        f"Closed (was {was}), reason {conversation.close_reason}; its proxy numbers are free."
    )


def _state(conversation: Conversation) -> str:
    if conversation.status == Conversation.Status.CLOSED:
        return f"closed, reason {conversation.close_reason}"
    return "active" if conversation_is_live(conversation=conversation) else "expired"


class ConversationStateViews(admin.ModelAdmin):
    """Close (an active or expired conversation) and Reopen (one that no longer routes);
    both need the "change conversation" permission and are written to the history."""

    change_form_template = "admin/proxy/conversation/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/close/",
                self.admin_site.admin_view(self.close_view),
                name=f"{info}_close",
            ),
            path(
                "<path:object_id>/reopen/",
                self.admin_site.admin_view(self.reopen_view),
                name=f"{info}_reopen",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None and self.has_change_permission(request, obj):
            context["can_close"] = obj.status == Conversation.Status.ACTIVE
            context["can_reopen"] = not conversation_is_live(conversation=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def close_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._state_view(request, object_id, close=True)

    def reopen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._state_view(request, object_id, close=False)

    def _state_view(self, request: HttpRequest, object_id: str, *, close: bool) -> HttpResponse:
        conversation = self.get_object(request, object_id)
        if conversation is None:
            raise Http404
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        page = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(conversation.pk)],
            current_app=self.admin_site.name,
        )
        was = _state(conversation)
        allowed = (
            conversation.status == Conversation.Status.ACTIVE
            if close
            else not conversation_is_live(conversation=conversation)
        )
        if not allowed:
            self.message_user(request, f"The conversation is {was}.", messages.WARNING)
            return HttpResponseRedirect(page)
        if request.method == "POST":
            if close:
                conversation, change = staff_close(conversation=conversation, now=timezone.now())
            else:
                try:
                    conversation = conversation_reopen(conversation=conversation)
                except ApplicationError as error:
                    self.message_user(request, error.detail, messages.ERROR)
                    return HttpResponseRedirect(page)
                change = f"Reopened (was {was})."
            self.log_change(request, conversation, change)
            self.message_user(request, change, messages.SUCCESS)
            return HttpResponseRedirect(page)
        verb = "Close" if close else "Reopen"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} this conversation: are you sure?",
            "subtitle": None,
            "opts": self.opts,
            "original": conversation,
            "verb": verb,
            "was": was,
            "close": close,
            "change_url": page,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/proxy/conversation/confirm_state.html", context)
