"""A test urlconf: a stand-in delivery-receipt view that records what the sandbox feeds it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

RECEIVED: list[dict[str, str]] = []


def record_receipt(request: HttpRequest) -> HttpResponse:
    RECEIVED.append({"method": request.method or "", **request.GET.dict()})
    return HttpResponse(status=200)


def failing_receipt(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("receipt view exploded")


urlpatterns = [
    path("webhooks/vonage/delivery-receipt/", record_receipt, name="vonage-delivery-receipt"),
    path("broken-receipts/", failing_receipt),
]
