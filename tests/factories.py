"""factory-boy factories for the models every test area uses."""

from __future__ import annotations

from typing import Any

import factory
from django.db.models import F
from django.utils import timezone

from smsproxy.numbers.models import ProvisioningJob, VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant


class VirtualNumberFactory(factory.django.DjangoModelFactory[VirtualNumber]):
    class Meta:
        model = VirtualNumber

    # 000-499 of Ofcom's drama range: the tests' people use 500-999, and a participant may not
    # have one of the pool's numbers (conversation_create refuses it).
    msisdn = factory.Sequence(lambda n: f"+447700900{n % 500:03d}")
    country = "GB"
    number_type = "mobile-lvn"
    features = "SMS,VOICE"
    inbound_webhook_url = "https://proxy.example.com/webhooks/vonage/inbound-sms/"
    configured_at = factory.LazyFunction(timezone.now)


class ProvisioningJobFactory(factory.django.DjangoModelFactory[ProvisioningJob]):
    class Meta:
        model = ProvisioningJob

    country = "GB"
    quantity = 1


class ConversationFactory(factory.django.DjangoModelFactory[Conversation]):
    class Meta:
        model = Conversation

    reference = factory.Sequence(lambda n: f"booking-{n}")


class ParticipantFactory(factory.django.DjangoModelFactory[Participant]):
    class Meta:
        model = Participant

    conversation = factory.SubFactory(ConversationFactory)
    name = factory.Sequence(lambda n: f"Person {n}")
    real_number = factory.Sequence(lambda n: f"+447700901{n % 1000:03d}")
    country = "GB"
    proxy_number = factory.SubFactory(VirtualNumberFactory)

    @classmethod
    def _create(cls, model_class: type[Participant], *args: Any, **kwargs: Any) -> Participant:
        """Keep the number's stored load right, as the conversation services do."""
        participant = super()._create(model_class, *args, **kwargs)
        if participant.active:
            VirtualNumber.objects.filter(pk=participant.proxy_number_id).update(
                assigned_participants=F("assigned_participants") + 1
            )
            participant.proxy_number.refresh_from_db(fields=["assigned_participants"])
        return participant


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    direction = Message.Direction.OUTBOUND
    status = Message.Status.QUEUED
    sender = "+447700900001"
    recipient = "+447700901001"
    text = "Hello"
