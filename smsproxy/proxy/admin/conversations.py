"""Admin for conversations: participants and messages inline, the close action, reassignment.

Conversations are opened through the API (assignment, insight and intro SMS live in the
service) and are never deleted (their messages are the audit trail), so the admin can neither
add nor delete them, nor edit their reference. Changing a participant's proxy number goes
through `participant_reassign`, the same uniqueness rule as automatic assignment. Every action
needs the "change conversation" permission.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from smsproxy.common.admin_display import status_badge
from smsproxy.common.admin_privacy import RealNumberMaskingMixin
from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.common.privacy import mask_number
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.admin.conversation_inlines import (
    MESSAGE_INLINE_LIMIT,
    LiveStatusFilter,
    MessageInline,
)
from smsproxy.proxy.admin.conversation_state import ConversationStateViews, staff_close
from smsproxy.proxy.admin.masking import participant_label
from smsproxy.proxy.admin.thread import thread_html
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import conversation_is_live
from smsproxy.proxy.services.conversations import (
    participant_reassign,
    participant_reassign_validate,
)


class _ReassignmentRefused(Exception):
    """The service refused a reassignment the form had accepted (a concurrent change won)."""

    def __init__(self, *, participant_id: int, proxy_number_id: int, detail: str) -> None:
        super().__init__(detail)
        self.participant_id = participant_id
        self.proxy_number_id = proxy_number_id
        self.detail = detail


# Per request being answered: participant id → (proxy number id, why the service refused it).
_refusals: WeakKeyDictionary[HttpRequest, dict[int, tuple[int, str]]] = WeakKeyDictionary()
# Per request being answered: the reassignments saved, in words, for the admin history.
_reassignments: WeakKeyDictionary[HttpRequest, list[str]] = WeakKeyDictionary()


class ParticipantInlineForm(forms.ModelForm):
    class Meta:
        model = Participant
        fields = ["proxy_number"]

    def __init__(
        self, *args: Any, refusals: Mapping[int, tuple[int, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.refusals = refusals or {}
        if "proxy_number" in self.fields:
            # Offer rented numbers (and the current one, released or not): a released number
            # can never be assigned, so listing it only invites a refusal.
            field = self.fields["proxy_number"]
            if isinstance(field, forms.ModelChoiceField):
                field.queryset = VirtualNumber.objects.filter(
                    Q(status=VirtualNumber.Status.ACTIVE) | Q(pk=self.instance.proxy_number_id)
                ).order_by("country", "msisdn")

    def clean_proxy_number(self) -> Any:
        proxy_number = self.cleaned_data["proxy_number"]
        participant = self.instance
        if participant.pk and proxy_number.pk != participant.proxy_number_id:
            refused_number_id, detail = self.refusals.get(participant.pk, (None, ""))
            if refused_number_id == proxy_number.pk:
                raise ValidationError(detail, code="refused")
            try:
                participant_reassign_validate(participant=participant, proxy_number=proxy_number)
            except ApplicationError as exc:
                raise ValidationError(exc.detail, code=exc.code) from exc
        return proxy_number


class ParticipantInline(RealNumberMaskingMixin, admin.TabularInline):
    model = Participant
    masked_fields: ClassVar = {"real_number": "real_number_masked"}
    form = ParticipantInlineForm
    fields = ["name", "real_number", "country", "proxy_number", "active", "created_at"]
    readonly_fields = ["name", "real_number", "country", "active", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and not conversation_is_live(conversation=obj):
            readonly.append("proxy_number")
        return readonly

    def get_queryset(self, request: HttpRequest) -> QuerySet[Participant]:
        return super().get_queryset(request).select_related("proxy_number")

    @admin.display(description="real number")
    def real_number_masked(self, participant: Participant) -> str:
        return mask_number(participant.real_number)


@admin.register(Conversation)
class ConversationAdmin(RealNumberMaskingMixin, ConversationStateViews):
    masked_fields: ClassVar = {
        "participant_summary": "participant_summary_masked",
        "thread": "thread_masked",
    }
    list_display = [
        "public_id",
        "reference",
        "live_status",
        "participant_summary",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
    ]
    list_filter = [LiveStatusFilter, "close_reason", "created_at"]
    search_fields = ["reference", "participants__real_number", "participants__name"]
    search_help_text = (
        "Reference, conversation id, a participant's name, real or proxy number (any format)."
    )
    date_hierarchy = "created_at"
    fields = [
        "public_id",
        "reference",
        "live_status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "all_messages",
        "thread",
    ]
    # The reference is the marketplace's, set through the API: an edit here would bypass the
    # services (and the events the marketplace relies on).
    readonly_fields = [
        "public_id",
        "reference",
        "live_status",
        "created_at",
        "expires_at",
        "closed_at",
        "close_reason",
        "all_messages",
        "thread",
    ]
    inlines = [ParticipantInline, MessageInline]
    actions = ["close_conversations"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "participants",
                    queryset=Participant.objects.select_related("proxy_number").order_by("id"),
                )
            )
        )

    @admin.display(description="status", ordering="status")
    def live_status(self, conversation: Conversation) -> str:
        if conversation_is_live(conversation=conversation):
            return status_badge("active", "Active")
        if conversation.status == Conversation.Status.ACTIVE:
            return status_badge("expired", "Expired, not yet swept")
        return status_badge("closed", "Closed")

    @admin.display(description="messages")
    def all_messages(self, conversation: Conversation) -> str:
        total = conversation.messages.count()
        url = reverse("admin:proxy_message_changelist")
        shown = (
            f"the latest {MESSAGE_INLINE_LIMIT} below" if total > MESSAGE_INLINE_LIMIT else "below"
        )
        return format_html(
            '<a href="{}?{}">All {} message(s)</a> ({})',
            url,
            urlencode({"conversation__id__exact": conversation.pk}),
            total,
            shown,
        )

    @admin.display(description="thread")
    def thread(self, conversation: Conversation) -> str:
        return thread_html(conversation=conversation, limit=MESSAGE_INLINE_LIMIT, masked=False)

    @admin.display(description="thread")
    def thread_masked(self, conversation: Conversation) -> str:
        return thread_html(conversation=conversation, limit=MESSAGE_INLINE_LIMIT, masked=True)

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ParticipantInline):
            kwargs["form_kwargs"] = {"refusals": _refusals.get(request, {})}
        if isinstance(inline, MessageInline) and obj is not None and obj.pk:
            # The formset filters its queryset again, which a sliced one refuses: select the
            # latest ids first.
            latest = list(
                Message.objects.filter(conversation=obj)
                .order_by("-created_at", "-id")
                .values_list("pk", flat=True)[:MESSAGE_INLINE_LIMIT]
            )
            kwargs["queryset"] = inline.get_queryset(request).filter(pk__in=latest)
        return kwargs

    @admin.display(description="participants")
    def participant_summary(self, conversation: Conversation) -> str:
        # One line per participant: the list stays narrow enough for 1400 px.
        return format_html_join(
            mark_safe("<br>"),
            "{}",
            ((participant_label(p, masked=False),) for p in conversation.participants.all()),
        )

    @admin.display(description="participants")
    def participant_summary_masked(self, conversation: Conversation) -> str:
        return format_html_join(
            mark_safe("<br>"),
            "{}",
            ((participant_label(p, masked=True),) for p in conversation.participants.all()),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        filtered = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        extra = Q()
        with contextlib.suppress(ValueError):
            extra |= Q(public_id=uuid.UUID(term))
        number = phone_parse(number=term) if term else None
        if number is not None:
            # "07700 900123" finds "+447700900123".
            extra |= Q(participants__real_number=number.e164)
            extra |= Q(participants__proxy_number__msisdn=number.e164)
        if extra:
            queryset = queryset | filtered.filter(extra)
            may_have_duplicates = True
        return queryset, may_have_duplicates

    def save_formset(
        self,
        request: HttpRequest,
        form: Any,
        formset: BaseInlineFormSet,
        change: Any,
    ) -> None:
        if formset.model is not Participant:
            super().save_formset(request, form, formset, change)
            return
        # Reassignment is the only edit of a participant; it goes through the service (which
        # re-checks under lock, closes expired holders of the route and queues the new intro)
        # instead of formset.save(). The formset's bookkeeping feeds the history message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for participant_form in formset.forms:
            if "proxy_number" not in participant_form.changed_data:
                continue
            participant = Participant.objects.select_related("proxy_number").get(
                pk=participant_form.instance.pk
            )
            was = participant.proxy_number.msisdn
            try:
                participant = participant_reassign(
                    participant=participant,
                    proxy_number=participant_form.cleaned_data["proxy_number"],
                )
            except ApplicationError as exc:
                raise _ReassignmentRefused(
                    participant_id=participant.pk,
                    proxy_number_id=participant_form.cleaned_data["proxy_number"].pk,
                    detail=exc.detail,
                ) from exc
            formset.changed_objects.append((participant, ["proxy_number"]))
            _reassignments.setdefault(request, []).append(
                f"Proxy number {was} → {participant.proxy_number.msisdn}"
                f" for {participant.name or f'participant #{participant.pk}'}"
            )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        # A reassignment is written with the numbers it swapped, not just the field's name.
        reassignments = _reassignments.pop(request, [])
        if reassignments:
            return "; ".join(reassignments) + "."
        return super().construct_change_message(request, form, formsets, add)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _ReassignmentRefused as refused:
            # The form had passed, then the service refused under lock. The admin runs the
            # whole save in one transaction, which the exception rolled back (other
            # participants' reassignments too). Answer the same POST again: the refused
            # number now fails validation, so the form comes back with the reason on the
            # participant's field, the choices kept, and nothing reported as saved.
            _reassignments.pop(request, None)
            _refusals.setdefault(request, {})[refused.participant_id] = (
                refused.proxy_number_id,
                refused.detail,
            )
            return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Close selected conversations (frees their numbers)", permissions=["change"]
    )
    def close_conversations(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        closed = 0
        now = timezone.now()
        for conversation in queryset.filter(status=Conversation.Status.ACTIVE):
            conversation, change = staff_close(conversation=conversation, now=now)
            self.log_change(request, conversation, change)
            closed += 1
        skipped = queryset.count() - closed
        self.message_user(
            request,
            f"Closed {closed} conversation(s)"
            + (f"; {skipped} already closed." if skipped else "."),
            messages.SUCCESS,
        )
