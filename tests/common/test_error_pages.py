from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import path

from smsproxy.urls import urlpatterns as project_urlpatterns

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("boom")


urlpatterns = [
    path("api/boom/", _boom),
    path("admin-boom/", _boom),
    *project_urlpatterns,
]
handler404 = "smsproxy.common.views.handler404"
handler500 = "smsproxy.common.views.handler500"


@pytest.mark.parametrize("url", ["/api/no-such-thing/", "/webhooks/vonage/nope/"])
def test_unknown_machine_endpoint_is_json_404(client, url):
    response = client.get(url)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["code"] == "not_found"


def test_unknown_page_for_people_is_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")


def test_server_error_on_api_is_json_500(settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    response = client.get("/api/boom/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    # Nothing says whether anything was changed: the error may have come after a commit.
    assert response.json() == {"code": "server_error", "detail": "Internal server error."}

    response = client.get("/admin-boom/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response["Content-Type"].startswith("text/html")
