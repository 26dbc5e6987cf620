from django.urls import URLPattern, path

from smsproxy.proxy.api import (
    ConversationCloseApi,
    ConversationDetailApi,
    ConversationListCreateApi,
    ConversationMessageListApi,
    ConversationReopenApi,
    EventListApi,
)

# `public_id` is matched as any segment and checked by the view, so that a malformed id gets
# the API's JSON 404 rather than the HTML one of the URL resolver.
urlpatterns: list[URLPattern] = [
    path("conversations/", ConversationListCreateApi.as_view(), name="conversation-list"),
    path(
        "conversations/<str:public_id>/",
        ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<str:public_id>/close/",
        ConversationCloseApi.as_view(),
        name="conversation-close",
    ),
    path(
        "conversations/<str:public_id>/messages/",
        ConversationMessageListApi.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<str:public_id>/reopen/",
        ConversationReopenApi.as_view(),
        name="conversation-reopen",
    ),
    path("events/", EventListApi.as_view(), name="event-list"),
]
