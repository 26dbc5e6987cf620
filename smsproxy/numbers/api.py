"""`GET /api/numbers/`: the pool of proxy numbers, for the marketplace's operators."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from smsproxy.common.api import ErrorSerializer
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.selectors import number_list


class NumberListApi(ListAPIView[VirtualNumber]):
    class FilterSerializer(serializers.Serializer[Any]):
        status = serializers.ChoiceField(choices=VirtualNumber.Status.choices, required=False)
        country = serializers.RegexField(
            r"^[A-Za-z]{2}$",
            required=False,
            error_messages={"invalid": "A two-letter country code, e.g. GB."},
        )

    # Named explicitly: every API view has an `OutputSerializer`, and the schema's component
    # names must not collide.
    @extend_schema_serializer(component_name="PoolNumber")
    class OutputSerializer(serializers.ModelSerializer[VirtualNumber]):
        type = serializers.CharField(source="number_type")
        features = serializers.ListField(child=serializers.CharField(), source="feature_list")
        active_participants = serializers.IntegerField(
            source="assigned_participants",
            help_text=(
                "Participants of live conversations that use this number (a conversation past "
                "its expiry counts until the sweep closes it, within 30 seconds)."
            ),
        )

        class Meta:
            model = VirtualNumber
            fields = [
                "msisdn",
                "country",
                "type",
                "features",
                "status",
                "reserved",
                "active_participants",
            ]

    serializer_class = OutputSerializer

    def get_queryset(self) -> QuerySet[VirtualNumber]:
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return number_list(**filters.validated_data)

    @extend_schema(
        operation_id="numbers_list",
        summary="List the pool of proxy numbers",
        parameters=[FilterSerializer],
        responses={
            HTTPStatus.OK: OutputSerializer(many=True),
            HTTPStatus.BAD_REQUEST: ErrorSerializer,
            HTTPStatus.NOT_FOUND: ErrorSerializer,  # a page past the last
        },
    )
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)
