from django.apps import AppConfig
from django.urls import register_converter


class CoreConfig(AppConfig):
    name = "chatapp.core"
    label = "core"

    def ready(self) -> None:
        from chatapp.core import checks  # noqa: F401 (registers them)
        from chatapp.core.converters import IdConverter

        register_converter(IdConverter, "id")
