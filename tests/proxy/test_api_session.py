"""The API for staff in a browser: their admin session works (the browsable API, /api/docs/'s
"Try it out") besides tokens; CSRF is enforced; other users' sessions are not enough. And the
OpenAPI examples are real bodies that the API itself answers with."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from smsproxy.proxy import api_examples
from smsproxy.proxy.models import Conversation
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db

LIST_URL = reverse("conversation-list")
BODY = {
    "participants": [
        {"number": person(1), "name": "Alice"},
        {"number": person(2), "name": "Bob"},
    ],
    "ttl": 86400,
}


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("support", password="pw-123456", is_staff=True)


def test_a_staff_session_reads_the_api_as_json_and_as_the_browsable_api(
    client: Client, staff: Any
) -> None:
    client.force_login(staff)

    as_json = client.get(LIST_URL)
    as_html = client.get(LIST_URL, HTTP_ACCEPT="text/html")

    assert as_json.status_code == as_html.status_code == HTTPStatus.OK
    assert as_json["Content-Type"] == "application/json"
    assert as_html["Content-Type"].startswith("text/html")
    assert 'class="response-info"' in as_html.content.decode()  # DRF's browsable page


def test_every_api_page_renders_in_the_browser(client: Client, staff: Any) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(1), person(2))
    client.force_login(staff)
    public_id = str(conversation.public_id)
    urls = [
        LIST_URL,
        reverse("conversation-detail", kwargs={"public_id": public_id}),
        reverse("conversation-messages", kwargs={"public_id": public_id}),
        reverse("conversation-close", kwargs={"public_id": public_id}),
        reverse("conversation-reopen", kwargs={"public_id": public_id}),
        "/api/events/",
        "/api/numbers/",
    ]
    for url in urls:
        response = client.get(url, HTTP_ACCEPT="text/html")
        # close and reopen are POST only: the browsable page says so (405), with its form.
        assert response.status_code in (HTTPStatus.OK, HTTPStatus.METHOD_NOT_ALLOWED), url
        assert response["Content-Type"].startswith("text/html"), url


def test_a_staff_session_must_send_the_csrf_token_to_change_anything(staff: Any) -> None:
    VirtualNumberFactory.create_batch(2)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)

    refused = browser.post(LIST_URL, BODY, content_type="application/json")
    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert "CSRF" in refused.json()["detail"]
    assert not Conversation.objects.exists()

    browser.get(LIST_URL, HTTP_ACCEPT="text/html")  # the browsable API sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    created = browser.post(LIST_URL, BODY, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == HTTPStatus.CREATED


def test_a_session_of_a_user_who_is_not_staff_is_not_enough(
    client: Client, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("customer", password="pw-123456")
    client.force_login(user)

    response = client.get(LIST_URL)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == "Token"


def test_tokens_need_no_csrf_token(api_user: Any, api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    api_client.enforce_csrf_checks = True
    assert api_client.post(LIST_URL, BODY, format="json").status_code == HTTPStatus.CREATED


def test_the_docs_page_works_for_a_staff_session(client: Client, staff: Any) -> None:
    client.force_login(staff)
    page = client.get(reverse("api-docs"))
    assert page.status_code == HTTPStatus.OK
    # Swagger UI's "Try it out" sends the CSRF token with unsafe requests.
    assert "X-CSRFTOKEN" in page.content.decode().upper()


# --- The OpenAPI examples are real bodies ---------------------------------------------------


def test_the_create_example_is_accepted_as_it_is(api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    example = api_examples.CREATE_REQUEST.value

    response = api_client.post(LIST_URL, example, format="json")

    assert response.status_code == HTTPStatus.CREATED
    data = response.json()
    assert [p["name"] for p in data["participants"]] == ["Alice", "Bob"]
    assert example["ttl"] == 86400


def test_the_response_examples_have_the_fields_the_api_answers_with(
    api_client: APIClient,
) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(1), person(2))
    detail = api_client.get(
        reverse("conversation-detail", kwargs={"public_id": str(conversation.public_id)})
    ).json()
    messages = api_client.get(
        reverse("conversation-messages", kwargs={"public_id": str(conversation.public_id)})
    ).json()["results"]

    example = api_examples.CONVERSATION_RESPONSE.value
    assert set(example) == set(detail)
    assert set(example["participants"][0]) == set(detail["participants"][0])
    assert len(example["participants"]) == 2
    for message_example in (
        api_examples.INBOUND_MESSAGE,
        api_examples.FORWARD_MESSAGE,
        api_examples.SYSTEM_MESSAGE_RESPONSE,
    ):
        assert set(message_example.value) == set(messages[0])
    forward = api_examples.FORWARD_MESSAGE.value
    assert forward["forwarded_from"] == api_examples.INBOUND_MESSAGE.value["id"]
