"""The production URLs plus `bench/bare/`: a Django view that answers 200 and does nothing else.

Only the HTTP benchmark uses it (`bench.http_settings`); the production URL conf has no such view.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from smsproxy.urls import handler404, handler500
from smsproxy.urls import urlpatterns as production_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"status": "ok"}', content_type="application/json")


urlpatterns = [path("bench/bare/", bare), *production_urlpatterns]
