from django.urls import URLPattern, path

from smsproxy.numbers.api import NumberListApi

urlpatterns: list[URLPattern] = [
    path("numbers/", NumberListApi.as_view(), name="numbers-list"),
]
