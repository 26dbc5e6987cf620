"""Close, Reopen and Reassign on the conversation page, and the list's close action.

Each shows a confirmation page first and needs the "change conversation" permission. The
services write the admin history (with the old and new values) in their own transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from smsproxy.common.admin_privacy import can_view_real_numbers
from smsproxy.common.audit import request_actor
from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.admin.confirm import confirmation_page
from smsproxy.proxy.admin.conversation_reassign import reassign_page
from smsproxy.proxy.admin.masking import participant_label
from smsproxy.proxy.models import Conversation
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.conversations import conversation_close
from smsproxy.proxy.services.reopen import conversation_reopen


def conversation_state(conversation: Conversation) -> str:
    if conversation.status == Conversation.Status.CLOSED:
        return f"closed, reason {conversation.close_reason}"
    return "active" if conversation_is_live(conversation=conversation) else "expired"


def _described(conversation: Conversation, *, masked: bool) -> str:
    people = "; ".join(participant_label(p, masked=masked) for p in conversation.participants.all())
    return f"{conversation} ({conversation_state(conversation)}): {people}"


class ConversationStateViews(admin.ModelAdmin):
    change_form_template = "admin/proxy/conversation/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        views = {
            "close": self.close_view,
            "reopen": self.reopen_view,
            "reassign": self.reassign_view,
        }
        return [
            *(
                path(
                    f"<path:object_id>/{name}/",
                    self.admin_site.admin_view(view),
                    name=f"{info}_{name}",
                )
                for name, view in views.items()
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
            live = conversation_is_live(conversation=obj)
            context["can_close"] = obj.status == Conversation.Status.ACTIVE
            context["can_reopen"] = not live
            context["can_reassign"] = live
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_url(self, conversation: Conversation) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(conversation.pk)],
            current_app=self.admin_site.name,
        )

    def _changeable(self, request: HttpRequest, object_id: str) -> Conversation:
        conversation = self.get_object(request, object_id)
        if conversation is None:
            raise Http404
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        return conversation

    def close_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._state_view(request, object_id, close=True)

    def reopen_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._state_view(request, object_id, close=False)

    def reassign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        conversation = self._changeable(request, object_id)
        page = self.change_url(conversation)
        if not conversation_is_live(conversation=conversation):
            message = f"The conversation is {conversation_state(conversation)}: reopen it first."
            self.message_user(request, message, messages.WARNING)
            return HttpResponseRedirect(page)
        return reassign_page(self, request, conversation=conversation, change_url=page)

    def _state_view(self, request: HttpRequest, object_id: str, *, close: bool) -> HttpResponse:
        conversation = self._changeable(request, object_id)
        page = self.change_url(conversation)
        was = conversation_state(conversation)
        allowed = (
            conversation.status == Conversation.Status.ACTIVE
            if close
            else not conversation_is_live(conversation=conversation)
        )
        if not allowed:
            self.message_user(request, f"The conversation is {was}.", messages.WARNING)
            return HttpResponseRedirect(page)
        if request.method == "POST":
            actor = request_actor(request)
            try:
                if close:
                    conversation_close(
                        conversation=conversation,
                        reason=Conversation.CloseReason.STAFF,
                        actor=actor,
                    )
                    done = f"Closed (was {was}); its proxy numbers are free."
                else:
                    conversation_reopen(conversation=conversation, actor=actor)
                    done = f"Reopened (was {was})."
            except ApplicationError as error:
                self.message_user(request, error.detail, messages.ERROR)
                return HttpResponseRedirect(page)
            self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(page)
        verb = "Close" if close else "Reopen"
        effect = (
            "Closing it stops routing between its participants at once and frees their proxy "
            "numbers."
            if close
            else "Reopening it routes again between its participants for a fresh time to live; "
            "a participant whose proxy number was taken meanwhile is given another."
        )
        return confirmation_page(
            self,
            request,
            title=f"{verb} this conversation: are you sure?",
            verb=verb,
            original=conversation,
            paragraphs=[f"The conversation “{conversation}” is {was}.", effect],
            cancel_url=page,
            # The button has said "Yes, close it" since the page first had it.
            confirm_label=f"Confirm: yes, {verb.lower()} it",
        )

    @admin.action(
        description="Close selected conversations (frees their numbers)", permissions=["change"]
    )
    def close_conversations(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse | None:
        """Like delete_selected: a page listing what will be closed, then Confirm closes it."""
        selected = list(queryset.order_by("pk"))
        open_ones = [c for c in selected if c.status == Conversation.Status.ACTIVE]
        if request.POST.get("confirm") != "yes":
            masked = not can_view_real_numbers(request)
            return confirmation_page(
                self,
                request,
                title="Close the selected conversations: are you sure?",
                verb="Close conversations",
                paragraphs=[
                    "Closing stops routing between the participants at once and frees their "
                    "proxy numbers."
                ],
                items=[_described(c, masked=masked) for c in open_ones],
                items_title=f"To be closed ({len(open_ones)})",
                skipped=[_described(c, masked=masked) for c in selected if c not in open_ones],
                skipped_title="Already closed, left as they are",
                hidden=[
                    ("action", "close_conversations"),
                    *((helpers.ACTION_CHECKBOX_NAME, c.pk) for c in selected),
                ],
                cancel_url=request.get_full_path(),
            )
        actor, now, closed = request_actor(request), timezone.now(), 0
        for conversation in open_ones:
            conversation_close(
                conversation=conversation,
                reason=Conversation.CloseReason.STAFF,
                now=now,
                actor=actor,
            )
            closed += 1
        skipped = len(selected) - closed
        self.message_user(
            request,
            f"Closed {closed} conversation(s)"
            + (f"; {skipped} already closed." if skipped else "."),
            messages.SUCCESS,
        )
        return None
