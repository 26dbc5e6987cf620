"""Vonage's webhooks, included under `webhooks/vonage/`."""

from django.urls import path

from smsproxy.proxy import voice_webhooks, webhooks

urlpatterns = [
    path("inbound-sms/", webhooks.inbound_sms, name="vonage-inbound-sms"),
    path("delivery-receipt/", webhooks.delivery_receipt, name="vonage-delivery-receipt"),
    # Masked calls (DESIGN §12): the Vonage application's answer and event URLs.
    path("voice/answer/", voice_webhooks.voice_answer, name="vonage-voice-answer"),
    path("voice/event/", voice_webhooks.voice_event, name="vonage-voice-event"),
]
