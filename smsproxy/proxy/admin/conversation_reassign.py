"""Reassign on the conversation page: choose a participant and a number, confirm, done.

`participant_reassign_validate` checks the choice before the confirmation page;
`participant_reassign` checks it again under lock when Confirm is pressed (a concurrent change
may have won meanwhile), and its refusal brings the form back with the reason and the choice
kept. The service writes the admin history. Real numbers stay masked for staff without
`view_real_numbers`, in the choices and in the reasons alike.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from smsproxy.common.admin_privacy import can_view_real_numbers
from smsproxy.common.audit import request_actor
from smsproxy.common.errors import ApplicationError
from smsproxy.common.privacy import mask_number, text_mask_numbers
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.admin.confirm import confirmation_page
from smsproxy.proxy.admin.masking import participant_label, participant_name
from smsproxy.proxy.models import Conversation, Participant
from smsproxy.proxy.selectors import assignable_features_q
from smsproxy.proxy.services.reassign import (
    participant_reassign,
    participant_reassign_validate,
)


class _ParticipantChoice(forms.ModelChoiceField):
    def __init__(self, *args: Any, masked: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.masked = masked

    def label_from_instance(self, obj: Any) -> str:
        return participant_label(obj, masked=self.masked)


class ReassignForm(forms.Form):
    def __init__(self, *args: Any, conversation: Conversation, masked: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.masked = masked
        self.fields["participant"] = _ParticipantChoice(
            queryset=Participant.objects.filter(conversation=conversation)
            .select_related("proxy_number", "conversation")
            .order_by("id"),
            masked=masked,
            widget=forms.RadioSelect,
            empty_label=None,
            label="Participant",
        )
        # Rented numbers able to carry the conversation: a released one can never be assigned,
        # so listing it only invites a refusal.
        self.fields["proxy_number"] = forms.ModelChoiceField(
            queryset=VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE)
            .filter(assignable_features_q())
            .order_by("country", "msisdn"),
            label="New proxy number",
            help_text="The participant texts this number from now on.",
        )

    def reason(self, error: ApplicationError) -> str:
        return text_mask_numbers(error.detail) if self.masked else error.detail

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        participant, number = cleaned.get("participant"), cleaned.get("proxy_number")
        if participant is None or number is None:
            return cleaned
        if number.pk == participant.proxy_number_id:
            self.add_error(
                "proxy_number", f"That is already {participant_name(participant)}'s proxy number."
            )
            return cleaned
        try:
            participant_reassign_validate(participant=participant, proxy_number=number)
        except ApplicationError as error:
            self.add_error("proxy_number", self.reason(error))
        return cleaned


def reassign_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    conversation: Conversation,
    change_url: str,
) -> HttpResponse:
    """GET: the form. POST: the confirmation page; POST with Confirm: the reassignment."""
    masked = not can_view_real_numbers(request)
    if request.method != "POST":
        initial = {"participant": request.GET.get("participant")}
        form = ReassignForm(initial=initial, conversation=conversation, masked=masked)
        return _form_page(model_admin, request, form, conversation, change_url)
    form = ReassignForm(request.POST, conversation=conversation, masked=masked)
    if not form.is_valid():
        return _form_page(model_admin, request, form, conversation, change_url)
    participant: Participant = form.cleaned_data["participant"]
    number: VirtualNumber = form.cleaned_data["proxy_number"]
    if request.POST.get("confirm") != "yes":
        number_shown = mask_number(participant.real_number) if masked else participant.real_number
        who = f"{participant_name(participant)} ({number_shown})"
        return confirmation_page(
            model_admin,
            request,
            title="Reassign a proxy number: are you sure?",
            verb="Reassign",
            original=conversation,
            paragraphs=[
                f"{who} will text {number.msisdn} instead of {participant.proxy_number.msisdn}.",
                f"{participant_name(participant)} gets an SMS from {number.msisdn} saying so; "
                f"{participant.proxy_number.msisdn} no longer reaches the other participant "
                "for them.",
            ],
            hidden=[("participant", participant.pk), ("proxy_number", number.pk)],
            cancel_url=change_url,
        )
    was = participant.proxy_number.msisdn
    try:
        participant_reassign(
            participant=participant, proxy_number=number, actor=request_actor(request)
        )
    except ApplicationError as error:
        # Refused under lock: the form again, the choice kept, the reason on the number.
        form.add_error("proxy_number", form.reason(error))
        return _form_page(model_admin, request, form, conversation, change_url)
    model_admin.message_user(
        request,
        f"Reassigned {participant_name(participant)}: proxy number {was} → {number.msisdn}.",
        messages.SUCCESS,
    )
    return HttpResponseRedirect(change_url)


def _form_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    form: ReassignForm,
    conversation: Conversation,
    change_url: str,
) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Reassign a proxy number",
        "subtitle": str(conversation),
        "opts": model_admin.opts,
        "original": conversation,
        "form": form,
        "cancel_url": change_url,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/proxy/conversation/reassign.html", context)
