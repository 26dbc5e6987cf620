"""The marketplace's conversations API (DESIGN.md §7): one view per operation, thin."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from smsproxy.common.api import ErrorSerializer, PageNumberPagination
from smsproxy.common.errors import ApplicationError
from smsproxy.proxy import api_examples
from smsproxy.proxy.create_input import create_arguments
from smsproxy.proxy.events.payloads import conversation_data
from smsproxy.proxy.models import Conversation, Event
from smsproxy.proxy.selectors import (
    conversation_get,
    conversation_list,
    conversation_message_list,
    event_list,
)
from smsproxy.proxy.serializers import (
    ConversationCreateInputSerializer,
    ConversationFilterSerializer,
    ConversationOutputSerializer,
    ConversationReopenInputSerializer,
    EventFilterSerializer,
    EventOutputSerializer,
    MessageOutputSerializer,
    SystemMessageInputSerializer,
)
from smsproxy.proxy.services.conversations import conversation_close, conversation_create
from smsproxy.proxy.services.reopen import conversation_reopen
from smsproxy.proxy.services.system_messages import system_message_send

TAG = "conversations"
PUBLIC_ID_PARAMETER = OpenApiParameter(
    "public_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The conversation's `id`.",
)
_AUTH_ERRORS = {
    HTTPStatus.UNAUTHORIZED: ErrorSerializer,
    HTTPStatus.TOO_MANY_REQUESTS: ErrorSerializer,
}


def _conversation_or_404(public_id: str, *, with_participants: bool = True) -> Conversation:
    conversation = conversation_get(public_id=public_id, with_participants=with_participants)
    if conversation is None:
        raise exceptions.NotFound("No conversation has this id.")
    return conversation


def _paginated_response(
    *,
    view: APIView,
    request: Request,
    queryset: QuerySet[Any] | Sequence[Any],
    serializer_class: type[Serializer[Any]],
    context: dict[str, Any],
) -> Response:
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


class ConversationListCreateApi(APIView):
    """The collection: list (GET) and open (POST) share the path of DESIGN.md §7."""

    # Read by drf-spectacular to describe the paginated list response.
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="conversations_list",
        tags=[TAG],
        parameters=[ConversationFilterSerializer],
        responses={
            HTTPStatus.OK: ConversationOutputSerializer(many=True),
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,  # a page past the last
            **_AUTH_ERRORS,
        },
        description="The conversations, newest first, optionally filtered.",
    )
    def get(self, request: Request) -> Response:
        filters = ConversationFilterSerializer(data=request.query_params)
        if not filters.is_valid():
            raise ApplicationError(
                "The filters are not valid.", code="validation_error", fields=dict(filters.errors)
            )
        now = timezone.now()
        return _paginated_response(
            view=self,
            request=request,
            queryset=conversation_list(**filters.validated_data, now=now),
            serializer_class=ConversationOutputSerializer,
            context={"now": now},
        )

    @extend_schema(
        operation_id="conversations_create",
        tags=[TAG],
        request=ConversationCreateInputSerializer,
        examples=[api_examples.CREATE_REQUEST, api_examples.CONVERSATION_RESPONSE],
        responses={
            HTTPStatus.CREATED: ConversationOutputSerializer,
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.CONFLICT: ErrorSerializer,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE: ErrorSerializer,
            HTTPStatus.SERVICE_UNAVAILABLE: ErrorSerializer,
            **_AUTH_ERRORS,
        },
        description=(
            "Validates both numbers (format, then Vonage Number Insight basic), assigns each "
            "participant a proxy number and queues the intro SMS. 400 `invalid_number` or "
            "`invalid_participants`; 503 `pool_exhausted` when no proxy number is free; 409 "
            "`assignment_conflict` when concurrent requests for the same person keep winning "
            "the chosen numbers (try again)."
        ),
    )
    def post(self, request: Request) -> Response:
        # A plainly valid body is read directly; any other goes through the serializer, which
        # alone writes the errors (see create_input).
        arguments = create_arguments(request.data)
        if arguments is None:
            payload = ConversationCreateInputSerializer(data=request.data)
            if not payload.is_valid():
                raise payload.application_error()
            arguments = payload.validated_data
        # Returned with its participants and their numbers: nothing is read back. The body is
        # ConversationOutputSerializer's (tests/proxy/events hold the two to one shape), built
        # without the serializer's per-field machinery: this is the API's busiest write.
        conversation = conversation_create(**arguments)
        body = conversation_data(
            conversation=conversation, participants=conversation.participants.all()
        )
        return Response(body, status=HTTPStatus.CREATED)


class ConversationDetailApi(APIView):
    @extend_schema(
        operation_id="conversations_retrieve",
        tags=[TAG],
        examples=[api_examples.CONVERSATION_RESPONSE],
        parameters=[PUBLIC_ID_PARAMETER],
        responses={
            HTTPStatus.OK: ConversationOutputSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,
            **_AUTH_ERRORS,
        },
    )
    def get(self, request: Request, public_id: str) -> Response:
        conversation = _conversation_or_404(public_id)
        return Response(ConversationOutputSerializer(conversation).data)


class ConversationCloseApi(APIView):
    @extend_schema(
        operation_id="conversations_close",
        tags=[TAG],
        examples=[api_examples.CLOSED_RESPONSE],
        parameters=[PUBLIC_ID_PARAMETER],
        request=None,
        responses={
            HTTPStatus.OK: ConversationOutputSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,
            HTTPStatus.CONFLICT: ErrorSerializer,
            **_AUTH_ERRORS,
        },
        description=(
            "Closes the conversation and frees its proxy numbers. Idempotent. 409 "
            "`close_conflict` when concurrent changes of its numbers keep aborting the close "
            "(try again)."
        ),
    )
    def post(self, request: Request, public_id: str) -> Response:
        conversation = _conversation_or_404(public_id, with_participants=False)
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
        return Response(ConversationOutputSerializer(_conversation_or_404(public_id)).data)


class ConversationMessageListApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="conversations_messages_list",
        tags=[TAG],
        examples=[api_examples.INBOUND_MESSAGE, api_examples.FORWARD_MESSAGE],
        parameters=[PUBLIC_ID_PARAMETER],
        responses={
            HTTPStatus.OK: MessageOutputSerializer(many=True),
            HTTPStatus.NOT_FOUND: ErrorSerializer,
            **_AUTH_ERRORS,
        },
        description="Every SMS of the conversation, in and out, oldest first.",
    )
    def get(self, request: Request, public_id: str) -> Response:
        conversation = _conversation_or_404(public_id, with_participants=False)
        return _paginated_response(
            view=self,
            request=request,
            queryset=conversation_message_list(conversation=conversation),
            serializer_class=MessageOutputSerializer,
            # One query for the names of every message on the page.
            context={"participants": list(conversation.participants.all())},
        )

    @extend_schema(
        operation_id="conversations_messages_create",
        tags=[TAG],
        examples=[api_examples.SYSTEM_MESSAGE_REQUEST, api_examples.SYSTEM_MESSAGE_RESPONSE],
        parameters=[PUBLIC_ID_PARAMETER],
        request=SystemMessageInputSerializer,
        responses={
            HTTPStatus.CREATED: MessageOutputSerializer,
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,
            HTTPStatus.CONFLICT: ErrorSerializer,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE: ErrorSerializer,
            **_AUTH_ERRORS,
        },
        description=(
            "A system message: the marketplace's own text to one participant, sent from that "
            "participant's proxy number (queued, rate-limited and redacted like a forward) and "
            "logged in the conversation with purpose `system`. 400 `validation_error` for an "
            "empty or too long text; 400 `not_a_participant` when `to` is not the real number "
            "of a participant; 409 `conversation_closed` when the conversation is closed or "
            "expired."
        ),
    )
    def post(self, request: Request, public_id: str) -> Response:
        conversation = _conversation_or_404(public_id, with_participants=False)
        payload = SystemMessageInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        message = system_message_send(conversation=conversation, **payload.validated_data)
        context = {"participants": list(conversation.participants.all())}
        return Response(
            MessageOutputSerializer(message, context=context).data, status=HTTPStatus.CREATED
        )


class ConversationReopenApi(APIView):
    @extend_schema(
        operation_id="conversations_reopen",
        tags=[TAG],
        parameters=[PUBLIC_ID_PARAMETER],
        request=ConversationReopenInputSerializer,
        responses={
            HTTPStatus.OK: ConversationOutputSerializer,
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,
            HTTPStatus.CONFLICT: ErrorSerializer,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE: ErrorSerializer,
            HTTPStatus.SERVICE_UNAVAILABLE: ErrorSerializer,
            **_AUTH_ERRORS,
        },
        description=(
            "Makes a closed or expired conversation live again. Each participant keeps their "
            "proxy number when it is still free for their real number, else gets a new one "
            "(and only then an intro SMS). The TTL restarts: the body's `ttl`, else the "
            "conversation's own. A live conversation is answered unchanged. 503 "
            "`pool_exhausted` when no number is free for a participant; 409 "
            "`assignment_conflict` when concurrent requests keep taking the chosen numbers."
        ),
    )
    def post(self, request: Request, public_id: str) -> Response:
        conversation = _conversation_or_404(public_id, with_participants=False)
        payload = ConversationReopenInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        conversation_reopen(conversation=conversation, **payload.validated_data)
        return Response(ConversationOutputSerializer(_conversation_or_404(public_id)).data)


class EventListApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(
        operation_id="events_list",
        tags=["events"],
        parameters=[EventFilterSerializer],
        responses={
            HTTPStatus.OK: EventOutputSerializer(many=True),
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,  # a page past the last
            **_AUTH_ERRORS,
        },
        description=(
            "The events of DESIGN.md §11 (what PROXY_EVENTS_URL is sent), newest last, each "
            "with its delivery status; `?after=<event id>` for a replay after an outage. 400 "
            "`unknown_event` when no event has the `after` id."
        ),
    )
    def get(self, request: Request) -> Response:
        filters = EventFilterSerializer(data=request.query_params)
        if not filters.is_valid():
            raise ApplicationError(
                "The filters are not valid.", code="validation_error", fields=dict(filters.errors)
            )
        after = None
        if after_id := filters.validated_data.get("after"):
            after = Event.objects.filter(public_id=after_id).first()
            if after is None:
                raise ApplicationError("No event has this id.", code="unknown_event")
        return _paginated_response(
            view=self,
            request=request,
            queryset=event_list(after=after),
            serializer_class=EventOutputSerializer,
            context={},
        )
