from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "smsproxy.sandbox"
    label = "sandbox"
    verbose_name = "Sandbox provider"
