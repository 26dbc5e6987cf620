"""Vonage's webhooks, included under `webhooks/vonage/`."""

from django.urls import path

from smsproxy.proxy import webhooks

urlpatterns = [
    path("inbound-sms/", webhooks.inbound_sms, name="vonage-inbound-sms"),
    path("delivery-receipt/", webhooks.delivery_receipt, name="vonage-delivery-receipt"),
]
