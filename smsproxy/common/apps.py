from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "smsproxy.common"
    label = "common"
    verbose_name = "smsproxy"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from smsproxy.common import checks  # noqa: F401  (registers the system checks)
        from smsproxy.common.psycopg_dumpers import on_connection_created

        connection_created.connect(on_connection_created, dispatch_uid="psycopg_dumpers_resolve")
