from django.apps import AppConfig


class NumbersConfig(AppConfig):
    name = "smsproxy.numbers"
    label = "numbers"
    verbose_name = "Number pool"
